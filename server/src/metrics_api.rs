//! `/metrics`: the live overview in Prometheus's text format, behind the
//! same bearer tokens as the API (viewer role). Series per container are
//! labelled with host, container, image and compose project/service.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use leakscope_engine::Engine;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::web::{AppState, HttpError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

const CONTAINER_LABELS: [&str; 5] = ["host", "container", "image", "compose_project", "compose_service"];

fn failed(e: prometheus::Error) -> HttpError {
    HttpError(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}"))
}

async fn metrics(
    State(engine): State<Engine>,
    State(access): State<crate::web::SharedAccess>,
    State(hub): State<std::sync::Arc<crate::agent_link::AgentHub>>,
) -> Result<impl IntoResponse, HttpError> {
    let oom_kills = engine.oom_kill_counts().await?;
    let mut hosts = engine.hosts();
    hosts.extend(hub.hosts(&access.with(|s| s.agents()).await?));
    let text = render(&engine, &hosts, &oom_kills).map_err(failed)?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT), (header::CACHE_CONTROL, "no-store")], text))
}

/// A registry per scrape: every series is the overview's now, and a container
/// that is gone is gone from the answer (no stale series kept in memory).
fn render(engine: &Engine, hosts: &[leakscope_model::HostInfo], oom_kills: &std::collections::HashMap<String, u64>) -> Result<String, prometheus::Error> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let working_set = gauge("leakscope_container_working_set_bytes", "Working set as docker stats shows it (usage minus inactive file cache).", &CONTAINER_LABELS)?;
    let usage = gauge("leakscope_container_usage_bytes", "Memory usage including the page cache.", &CONTAINER_LABELS)?;
    let limit = gauge("leakscope_container_limit_bytes", "The container's memory limit (only where one is set).", &CONTAINER_LABELS)?;
    let limit_set = gauge("leakscope_container_limit_set", "1 when the container has a memory limit of its own, else 0.", &CONTAINER_LABELS)?;
    let running = gauge("leakscope_container_running", "1 while the container runs.", &CONTAINER_LABELS)?;
    let leak = gauge("leakscope_container_leak", "1 when Leakscope's verdict on the container is leak, else 0 (only once assessed).", &CONTAINER_LABELS)?;
    let slope = gauge("leakscope_container_growth_bytes_per_second", "Slope of the working set's floor over the detector's window.", &CONTAINER_LABELS)?;
    let time_to_limit =
        gauge("leakscope_container_time_to_limit_seconds", "Time until the working set reaches the limit at its current growth (only where it grows towards one).", &CONTAINER_LABELS)?;
    let ooms = IntCounterVec::new(Opts::new("leakscope_container_oom_kills_total", "OOM kills the engine reported for containers of this name (over the kept events)."), &CONTAINER_LABELS)?;
    registry.register(Box::new(ooms.clone()))?;
    let host_connected = gauge("leakscope_host_connected", "1 while Leakscope reaches the host's Docker engine.", &["host", "via"])?;
    let host_seen = gauge("leakscope_host_last_seen_timestamp_seconds", "When the host's engine last answered (Unix seconds).", &["host", "via"])?;
    let panics = IntCounterVec::new(Opts::new("leakscope_handler_panics_total", "Requests that panicked in the server (each answered 500 and logged)."), &[])?;
    registry.register(Box::new(panics.clone()))?;

    let overview = engine.overview();
    let local_host = engine.host_name();
    for c in &overview.containers {
        let values = [
            c.host.as_str(),
            c.name.as_str(),
            c.image.as_str(),
            c.compose_project.as_deref().unwrap_or(""),
            c.compose_service.as_deref().unwrap_or(""),
        ];
        let is_running = c.state == "running";
        running.with_label_values(&values).set(if is_running { 1.0 } else { 0.0 });
        limit_set.with_label_values(&values).set(if c.limit_bytes.is_some() { 1.0 } else { 0.0 });
        if let Some(l) = c.limit_bytes {
            limit.with_label_values(&values).set(l as f64);
        }
        // Counted from this server's own events; an agent's host keeps its own.
        if c.host == local_host {
            ooms.with_label_values(&values).inc_by(oom_kills.get(&c.name).copied().unwrap_or(0));
        }
        if let Some(m) = c.memory.as_ref().filter(|_| is_running) {
            working_set.with_label_values(&values).set(m.working_set_bytes as f64);
            usage.with_label_values(&values).set(m.usage_bytes as f64);
        }
        if let Some(status) = c.leak.as_ref().filter(|_| is_running) {
            leak.with_label_values(&values).set(if status.leak { 1.0 } else { 0.0 });
            slope.with_label_values(&values).set(status.slope_bytes_per_hour / 3600.0);
            if let Some(ttl) = status.time_to_limit_seconds {
                time_to_limit.with_label_values(&values).set(ttl);
            }
        }
    }
    for host in hosts {
        let values = [host.name.as_str(), host.via.as_str()];
        host_connected.with_label_values(&values).set(if host.connected { 1.0 } else { 0.0 });
        if let Some(ms) = host.last_seen_ms {
            host_seen.with_label_values(&values).set(ms as f64 / 1000.0);
        }
    }
    panics.with_label_values(&[] as &[&str]).inc_by(crate::web::panics::count());
    let mut text = String::new();
    TextEncoder::new().encode_utf8(&registry.gather(), &mut text)?;
    Ok(text)
}
