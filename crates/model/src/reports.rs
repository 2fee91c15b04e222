//! Leak reports: a frozen copy of what a container looked like over a time
//! window (series, verdict, events, dump analyses and their diff), so a link
//! keeps showing the same thing after retention has dropped the samples.

use serde::{Deserialize, Serialize};

use crate::analysis::{HeapDiff, HeapSummary, HistogramEntry, Suspect};
use crate::dumps::DumpInfo;
use crate::{ContainerEvent, LeakStatus, MemoryPoint};

/// `POST /api/v1/reports`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportRequest {
    /// Container id or name.
    pub container: String,
    /// RFC 3339.
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub dumps: Vec<String>,
    #[serde(default)]
    pub title: String,
    /// Plain text or Markdown (rendered without raw HTML).
    #[serde(default)]
    pub notes: String,
}

/// `POST /api/v1/check-reports`: a run measured elsewhere (`leakscope check`
/// in a CI job) frozen as a report. The series comes with the request, since
/// the server never watched that container; dumps are uploaded first
/// (`POST /api/v1/dumps`) and named here by id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunReportRequest {
    #[serde(default)]
    pub title: String,
    /// Plain text or Markdown (rendered without raw HTML).
    #[serde(default)]
    pub notes: String,
    /// The service's name in the run (compose service, or the image's name).
    pub service: String,
    pub container_name: String,
    #[serde(default)]
    pub image: String,
    /// RFC 3339: the run's start and end.
    pub from: String,
    pub to: String,
    /// The run's samples, oldest first (at most 100 000; drawn from at most about a thousand).
    pub series: Vec<MemoryPoint>,
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    /// The run's verdict.
    #[serde(default)]
    pub leak: Option<LeakStatus>,
    #[serde(default)]
    pub events: Vec<ContainerEvent>,
    /// Dumps already uploaded to this server (their analyses are frozen as they are).
    #[serde(default)]
    pub dumps: Vec<String>,
}

/// One dump as a report keeps it: the numbers and the suspects, never contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportDump {
    pub info: DumpInfo,
    pub summary: Option<HeapSummary>,
    pub suspects: Vec<Suspect>,
    /// The classes retaining the most, largest first.
    pub top_classes: Vec<HistogramEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub id: String,
    /// The unguessable part of `/reports/<slug>`.
    pub slug: String,
    pub title: String,
    pub notes: String,
    pub created_ms: i64,
    pub created_by: String,
    pub container_name: String,
    pub container_id: String,
    pub image: String,
    pub service: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Downsampled to at most about a thousand points.
    pub series: Vec<MemoryPoint>,
    pub step_ms: i64,
    pub limit_bytes: Option<u64>,
    pub leak: Option<LeakStatus>,
    pub events: Vec<ContainerEvent>,
    pub dumps: Vec<ReportDump>,
    /// Earliest chosen dump to the latest, when two or more were chosen (top classes only).
    pub diff: Option<HeapDiff>,
    /// Present while the report is shared publicly (`/r/<token>`).
    #[serde(default)]
    pub public_token: Option<String>,
    /// The Docker host the container ran on (its display name); none for CI runs.
    #[serde(default)]
    pub host: Option<String>,
}

impl Report {
    pub fn url(&self) -> String {
        format!("/reports/{}", self.slug)
    }

    /// The verdict in one line, as the page, the preview and the Markdown say it.
    pub fn verdict_line(&self) -> String {
        match &self.leak {
            Some(l) => {
                let slope = format!("{}/h", crate::format_signed_bytes(l.slope_bytes_per_hour as i64));
                let left = l.time_to_limit_seconds.map(|s| format!(", limit in {}", crate::format_duration(s))).unwrap_or_default();
                format!("{} — {} ({slope}{left})", l.verdict, l.reason)
            }
            None => "no verdict yet (too little history when the report was made)".into(),
        }
    }

    /// The chart's PNG: the public one when shared, since chat tools and
    /// ticket systems fetch it without an account.
    pub fn chart_png_path(&self) -> String {
        match &self.public_token {
            Some(token) => format!("/r/{token}/chart.png"),
            None => format!("/reports/{}/chart.png", self.slug),
        }
    }
}

/// The site's own address as the browser used it (`Host`, `X-Forwarded-Proto`).
pub fn site_origin(host: Option<&str>, forwarded_proto: Option<&str>) -> String {
    let host = host.filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))).unwrap_or("localhost");
    let scheme = if forwarded_proto == Some("https") { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// A row of `/reports`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportListItem {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub container_name: String,
    pub created_ms: i64,
    pub created_by: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub public: bool,
}

/// A report as its page shows it: the frozen record (its series drawn
/// already, so the points need not travel to the browser), the notes as
/// sanitised HTML, and the preview image for chat tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportPage {
    pub report: Report,
    /// The inline chart, drawn by the server (plotters SVG).
    pub chart_svg: String,
    /// The notes' Markdown rendered and sanitised on the server.
    pub notes_html: String,
    /// Absolute URL of the OpenGraph PNG.
    pub og_image: String,
    /// Opened through a public link: no account, no links into the team's pages.
    pub public: bool,
}
