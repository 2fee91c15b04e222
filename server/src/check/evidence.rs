//! `--dumps start-end`: a heap dump of each judged service after the warm-up
//! and another at the end, taken by the engine's own capture (every runtime
//! it knows, nothing needed in the image), analysed in this process, and
//! compared: the classes that grew are the check's evidence.

use std::time::{Duration, Instant};

use leakscope_engine::capture::CaptureRequest;
use leakscope_engine::{now_ms, Engine};
use serde::Serialize;

/// `--dumps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpPlan {
    None,
    /// After the warm-up and at the end.
    StartEnd,
}

/// A capture (with its analysis) may take this long before the check gives up on it.
const CAPTURE_LIMIT: Duration = Duration::from_secs(15 * 60);
const POLL: Duration = Duration::from_millis(500);
/// How many grown classes the outputs list.
const GROWN_CLASSES: usize = 5;

/// One dump the check took.
#[derive(Clone, Debug, Serialize)]
pub struct TakenDump {
    /// The id in the check's own (temporary) store.
    pub id: String,
    pub taken_ms: i64,
    pub bytes: u64,
    pub runtime: Option<String>,
    pub pause_ms: Option<u64>,
    pub file_name: String,
}

/// A class (Java) or constructor (Node.js) that grew between the two dumps.
#[derive(Clone, Debug, Serialize)]
pub struct GrownClass {
    pub class: String,
    pub instances_delta: i64,
    pub shallow_bytes_delta: i64,
    pub retained_bytes_delta: i64,
}

/// What the two dumps say about one service.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DumpEvidence {
    pub start: Option<TakenDump>,
    pub end: Option<TakenDump>,
    /// Largest growth first.
    pub grown: Vec<GrownClass>,
    /// The later dump's biggest suspect, with its growth since the first.
    pub suspect: Option<String>,
    /// Why a dump or the comparison is missing, in words.
    pub problems: Vec<String>,
}

impl DumpEvidence {
    /// One line for the log and the JUnit details: `grew …: A +12 MiB retained (+6000 objects), B …`.
    pub fn grown_line(&self) -> Option<String> {
        if self.grown.is_empty() {
            return None;
        }
        let each: Vec<String> = self
            .grown
            .iter()
            .map(|c| format!("{} {} retained ({:+} objects)", c.class, signed_mib(c.retained_bytes_delta), c.instances_delta))
            .collect();
        Some(format!("grew between the dumps: {}", each.join(", ")))
    }
}

pub fn signed_mib(bytes: i64) -> String {
    let sign = if bytes < 0 { "-" } else { "+" };
    format!("{sign}{}", leakscope_detect::mib(bytes.unsigned_abs() as f64))
}

/// Takes a dump of the container's process (the biggest one when several
/// can be dumped) and waits for its analysis. `confirmed`: capture even near
/// the memory limit (at the end, when the judged window is already closed).
pub async fn take(engine: &Engine, container: &str, confirmed: bool) -> Result<TakenDump, String> {
    let started = Instant::now();
    let request = CaptureRequest {
        container: container.to_string(),
        pid: None,
        confirmed,
        trigger: "check".into(),
        requested_by: Some("leakscope check".into()),
        kind: None,
    };
    let mut job = finished_job(engine, engine.start_capture(request.clone()).await.map_err(|e| e.to_string())?, started).await?;
    if job.state == "failed" && job.processes.len() > 1 {
        // Several dumpable processes (cluster workers, a wrapper): the one holding the most memory.
        let biggest = job.processes.iter().filter(|p| p.capturable).max_by_key(|p| p.rss_bytes.unwrap_or(0)).map(|p| p.pid);
        if let Some(pid) = biggest {
            let retry = CaptureRequest { pid: Some(pid), ..request };
            job = finished_job(engine, engine.start_capture(retry).await.map_err(|e| e.to_string())?, started).await?;
        }
    }
    let dump_id = match (job.state.as_str(), job.dump_id) {
        ("done", Some(id)) => id,
        _ => return Err(job.error.unwrap_or_else(|| "the capture failed without saying why".into())),
    };
    loop {
        let info = engine.dump(&dump_id).await.map_err(|e| e.to_string())?;
        match info.analysis_state.as_str() {
            "done" => {
                return Ok(TakenDump {
                    id: info.id,
                    taken_ms: info.created_ms,
                    bytes: info.size_bytes,
                    runtime: info.runtime,
                    pause_ms: info.pause_ms,
                    file_name: info.file_name,
                })
            }
            "failed" => return Err(format!("the dump was taken but its analysis failed: {}", info.analysis_error.unwrap_or_default())),
            _ if started.elapsed() > CAPTURE_LIMIT => return Err("the dump's analysis did not finish within 15 minutes".into()),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

async fn finished_job(engine: &Engine, job_id: String, started: Instant) -> Result<leakscope_model::capture::CaptureJob, String> {
    loop {
        let job = engine.capture_job(&job_id).ok_or("the capture job vanished")?;
        if job.state != "running" {
            return Ok(job);
        }
        if started.elapsed() > CAPTURE_LIMIT {
            return Err(format!("the capture did not finish within 15 minutes (stage {})", job.stage));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Compares the two dumps (when both were taken) into the evidence.
pub async fn compare(engine: &Engine, evidence: &mut DumpEvidence) {
    let (Some(start), Some(end)) = (&evidence.start, &evidence.end) else { return };
    match engine.dump_diff(&start.id, &end.id).await {
        Ok(diff) => {
            let mut grown: Vec<GrownClass> = diff
                .classes
                .iter()
                .filter(|c| c.retained_bytes_delta > 0 || c.shallow_bytes_delta > 0)
                .map(|c| GrownClass {
                    class: c.class.clone(),
                    instances_delta: c.instances_delta,
                    shallow_bytes_delta: c.shallow_bytes_delta,
                    retained_bytes_delta: c.retained_bytes_delta,
                })
                .collect();
            // By what the class's instances hold: the leaking objects and
            // their holders come first, not only the biggest leaves (byte[]).
            grown.sort_by_key(|c| std::cmp::Reverse((c.retained_bytes_delta, c.shallow_bytes_delta)));
            grown.truncate(GROWN_CLASSES);
            evidence.grown = grown;
            evidence.suspect = diff
                .suspects
                .iter()
                .max_by_key(|s| s.retained_bytes_delta)
                .filter(|s| s.retained_bytes_delta > 0)
                .map(|s| format!("{} ({} since the first dump)", s.description, signed_mib(s.retained_bytes_delta)));
        }
        Err(e) => evidence.problems.push(format!("the dumps could not be compared: {e}")),
    }
}

/// When the first dump ended, the judged window may start (its pause and the
/// full collection it triggers are not the service's own behaviour).
pub fn judged_after(evidence: Option<&DumpEvidence>) -> Option<i64> {
    evidence.and_then(|e| e.start.as_ref()).map(|d| d.taken_ms.max(0)).map(|t| t.min(now_ms()))
}
