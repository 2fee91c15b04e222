//! `--server URL --token T`: the run sent to a Leakscope server as a report
//! (the dumps uploaded and analysed there, then the series, verdict and
//! events frozen by `POST /api/v1/check-reports`), so the build log carries a
//! link a team mate opens in the browser.
//!
//! ureq, blocking, on the blocking pool: a handful of requests per run, and
//! a dump upload that must stream from the store without holding it.

use std::time::{Duration, Instant};

use leakscope_engine::Engine;
use leakscope_model::reports::RunReportRequest;
use leakscope_model::{ContainerEvent, MemoryPoint};

/// How long the server may take to analyse an uploaded dump.
const ANALYSIS_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Where and as whom.
#[derive(Clone)]
pub struct Target {
    /// `https://leakscope.example` (no trailing slash).
    pub base: String,
    pub token: String,
    /// Also make a public link (readable without an account).
    pub share: bool,
}

impl Target {
    pub fn new(url: &str, token: &str, share: bool) -> Result<Target, String> {
        let base = url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("--server {url}: expected an http:// or https:// address"));
        }
        if token.trim().is_empty() {
            return Err("--server needs --token (or LEAKSCOPE_TOKEN): an operator's API token (`leakscope token create --role operator`)".into());
        }
        Ok(Target { base, token: token.trim().to_string(), share })
    }

    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(15)).timeout_read(Duration::from_secs(120)).build()
    }

    fn request(&self, agent: &ureq::Agent, method: &str, path: &str) -> ureq::Request {
        agent.request(method, &format!("{}{path}", self.base)).set("Authorization", &format!("Bearer {}", self.token))
    }
}

/// Before anything starts: the server answers and takes this token for
/// creating reports, so a pipeline learns of a wrong address or token at
/// once rather than after the whole run. An empty report request is refused
/// for its shape (422) only once the token passed.
pub async fn preflight(target: &Target) -> Result<(), String> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let agent = Target::agent();
        let answer = target.request(&agent, "POST", "/api/v1/check-reports").send_json(serde_json::json!({}));
        match answer {
            Err(ureq::Error::Status(400 | 422, _)) => Ok(()),
            Ok(_) => Err(format!("{}: does not look like a Leakscope server (it accepted an empty report)", target.base)),
            other => said(other, &format!("--server {}", target.base)).map(|_| ()),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The server's answer in words: its own `{"error": …}` when it gave one.
fn said(result: Result<ureq::Response, ureq::Error>, what: &str) -> Result<serde_json::Value, String> {
    match result {
        Ok(response) => response.into_json::<serde_json::Value>().map_err(|e| format!("{what}: the server's answer is not JSON: {e}")),
        Err(ureq::Error::Status(status, response)) => {
            let body = response.into_string().unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(body);
            let hint = match status {
                401 => " (is the token right and not revoked?)",
                403 => " (the token needs the operator role)",
                _ => "",
            };
            Err(format!("{what}: the server answered {status}: {message}{hint}"))
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// One service's run, as the check measured it.
pub struct Run {
    pub service: String,
    pub container: String,
    pub image: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub points: Vec<MemoryPoint>,
    pub events: Vec<ContainerEvent>,
    pub limit_bytes: Option<u64>,
    pub verdict: leakscope_model::LeakStatus,
    pub notes: String,
    /// Dumps in the check's own store, uploaded first.
    pub dumps: Vec<String>,
}

/// Uploads the run's dumps, waits for the server's analyses, creates the
/// report; returns its absolute link (the public one with `share`).
pub async fn publish(engine: &Engine, target: &Target, run: Run) -> Result<String, String> {
    let mut uploads = Vec::new();
    for id in &run.dumps {
        let info = engine.dump(id).await.map_err(|e| e.to_string())?;
        let reader = engine.dump_reader(id).await.map_err(|e| e.to_string())?;
        uploads.push((info, reader));
    }
    let target = target.clone();
    tokio::task::spawn_blocking(move || publish_blocking(&target, run, uploads))
        .await
        .map_err(|e| format!("sending the report: {e}"))?
}

fn publish_blocking(target: &Target, run: Run, uploads: Vec<(leakscope_model::dumps::DumpInfo, impl std::io::Read)>) -> Result<String, String> {
    let agent = Target::agent();
    let mut ids = Vec::new();
    for (info, reader) in uploads {
        let path = format!(
            "/api/v1/dumps?name={}&service={}&container={}",
            query_value(&info.file_name),
            query_value(&run.service),
            query_value(&run.container)
        );
        // Streamed (chunked): the dump is decompressed from the store as it is sent.
        let answer = said(
            target.request(&agent, "POST", &path).set("Content-Type", "application/octet-stream").send(reader),
            &format!("uploading {}", info.file_name),
        )?;
        let id = answer["id"].as_str().ok_or("uploading a dump: the server gave no id")?.to_string();
        wait_for_analysis(target, &agent, &id)?;
        ids.push(id);
    }
    let request = RunReportRequest {
        title: format!("Memory check of {}: {}", run.service, run.verdict.verdict),
        notes: run.notes,
        service: run.service,
        container_name: run.container,
        image: run.image,
        from: leakscope_model::rfc3339_utc(run.from_ms),
        to: leakscope_model::rfc3339_utc(run.to_ms),
        series: run.points,
        limit_bytes: run.limit_bytes,
        leak: Some(run.verdict),
        events: run.events,
        dumps: ids,
    };
    let body = serde_json::to_value(&request).map_err(|e| e.to_string())?;
    let created = said(target.request(&agent, "POST", "/api/v1/check-reports").send_json(body), "creating the report")?;
    let (Some(id), Some(url)) = (created["id"].as_str(), created["url"].as_str()) else {
        return Err("creating the report: the server gave no link".into());
    };
    if !target.share {
        return Ok(format!("{}{url}", target.base));
    }
    let shared = said(target.request(&agent, "POST", &format!("/api/v1/reports/{id}/share")).call(), "sharing the report")?;
    let public = shared["url"].as_str().ok_or("sharing the report: the server gave no link")?;
    Ok(format!("{}{public}", target.base))
}

fn wait_for_analysis(target: &Target, agent: &ureq::Agent, id: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let info = said(target.request(agent, "GET", &format!("/api/v1/dumps/{id}")).call(), "waiting for the server's analysis")?;
        match info["analysis_state"].as_str() {
            Some("done") => return Ok(()),
            // The report still links the dump; its page says why the analysis failed.
            Some("failed") => return Ok(()),
            _ if started.elapsed() > ANALYSIS_LIMIT => return Err(format!("the server did not analyse dump {id} within 15 minutes")),
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Percent-encoding for a query value (RFC 3986 unreserved characters kept).
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_tokens_are_checked_and_query_values_encoded() {
        assert!(Target::new("ftp://x", "t", false).is_err());
        assert!(Target::new("https://leakscope.example/", " ", false).err().unwrap_or_default().contains("--token"));
        assert_eq!(Target::new("https://leakscope.example/", "t", false).ok().map(|t| t.base).as_deref(), Some("https://leakscope.example"));
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
