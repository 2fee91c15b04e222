//! Server functions: thin calls into the engine. The JSON API in the server
//! crate calls the same engine methods.

use leakscope_model::capture::CaptureJob;
use leakscope_model::dumps::DumpFilter;
use leakscope_model::{ContainerDetail, Overview};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
fn engine() -> Result<leakscope_engine::Engine, ServerFnError> {
    use_context::<leakscope_engine::Engine>().ok_or_else(|| ServerFnError::new("engine missing from context"))
}

/// Everything the dashboard shows; answers even while the engine is down
/// (the overview then carries the reason).
#[server(input = GetUrl)]
pub async fn get_overview() -> Result<Overview, ServerFnError> {
    Ok((*engine()?.overview()).clone())
}

/// One container, live or from history. `Ok(None)` when Leakscope never saw it.
#[server(input = GetUrl)]
pub async fn get_container(name: String) -> Result<Option<ContainerDetail>, ServerFnError> {
    match engine()?.container(&name).await {
        Ok(detail) => Ok(Some(detail)),
        Err(leakscope_engine::EngineError::UnknownContainer(_)) => {
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(http::StatusCode::NOT_FOUND);
            }
            Ok(None)
        }
        Err(e) => Err(ServerFnError::new(e.to_string())),
    }
}

/// Every dump, newest first, narrowed by service, container and runtime.
#[server(input = GetUrl)]
pub async fn list_dumps(filter: DumpFilter) -> Result<Vec<leakscope_model::dumps::DumpInfo>, ServerFnError> {
    engine()?.dumps(filter).await.map_err(|e| ServerFnError::new(e.to_string()))
}

/// The API reference: the server's OpenAPI document, flattened.
#[server(input = GetUrl)]
pub async fn get_api_reference() -> Result<leakscope_model::api_doc::ApiReference, ServerFnError> {
    use_context::<std::sync::Arc<leakscope_model::api_doc::ApiReference>>()
        .map(|r| (*r).clone())
        .ok_or_else(|| ServerFnError::new("API reference missing from context"))
}

/// A capture job by id, else the latest one for the container (`None` when there is none).
#[server(input = GetUrl)]
pub async fn get_capture(container: String, job_id: Option<String>) -> Result<Option<CaptureJob>, ServerFnError> {
    let engine = engine()?;
    Ok(match job_id.filter(|j| !j.is_empty()) {
        Some(id) => engine.capture_job(&id),
        None => engine.latest_capture(&container),
    })
}

/// A dump and, once ready, its analysis.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DumpPage {
    pub info: leakscope_model::dumps::DumpInfo,
    pub analysis: Option<leakscope_model::analysis::Analysis>,
    /// Dumps of the same service, newest first (for diffs).
    pub siblings: Vec<leakscope_model::dumps::DumpInfo>,
    /// Why the object asked for (`?node=`) could not be shown.
    pub node_error: Option<String>,
    /// Go heap profiles: the call tree as a flame graph (from the whole tree, before trimming).
    #[serde(default)]
    pub flame: Vec<leakscope_model::flame::FlameFrame>,
}

#[server(input = GetUrl)]
pub async fn get_dump(id: String, node: Option<String>) -> Result<Option<DumpPage>, ServerFnError> {
    let engine = engine()?;
    let info = match engine.dump(&id).await {
        Ok(info) => info,
        Err(leakscope_engine::EngineError::UnknownDump(_)) => {
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(http::StatusCode::NOT_FOUND);
            }
            return Ok(None);
        }
        Err(e) => return Err(ServerFnError::new(e.to_string())),
    };
    let mut analysis = engine.dump_analysis(&id).await.ok();
    let mut node_error = None;
    // An object outside the stored slice of the tree is looked up in the dump itself.
    // So is one whose children the slice cut off (it keeps only the biggest, above 0.05 % of the heap).
    if let (Some(n), Some(a)) = (node.as_deref(), analysis.as_ref()) {
        if !a.tree_lists_children_of(Some(n)) {
            match engine.dump_object(&id, n).await {
                Ok(detail) => analysis = analysis.map(|a| a.with_object(&detail)),
                Err(e) => node_error = Some(e.to_string()),
            }
        }
    }
    let flame = analysis.as_ref().filter(|a| a.summary.format == "pprof").map(leakscope_model::flame::layout).unwrap_or_default();
    let analysis = analysis.map(|a| a.trimmed_for(node.as_deref()));
    let siblings = engine
        .dumps(DumpFilter { service: Some(info.service.clone()), ..Default::default() })
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?
        .into_iter()
        .filter(|d| d.id != info.id)
        .collect();
    Ok(Some(DumpPage { info, analysis, siblings, node_error, flame }))
}

#[server(input = GetUrl)]
pub async fn get_diff(before: String, after: String) -> Result<leakscope_model::analysis::HeapDiff, ServerFnError> {
    engine()?.dump_diff(&before, &after).await.map_err(|e| ServerFnError::new(e.to_string()))
}

/// A container's lifecycle events of the last 7 days, newest first (at most 50).
#[server(input = GetUrl)]
pub async fn get_events(name: String) -> Result<Vec<leakscope_model::ContainerEvent>, ServerFnError> {
    let now = leakscope_engine::now_ms();
    let mut events = engine()?
        .events(&name, now - 7 * 86_400_000, now + 1)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    events.reverse();
    events.retain(|e| e.action != "oom");
    events.truncate(50);
    Ok(events)
}

/// A suggested memory limit from the observed working set (`None` with under an hour of history).
#[server(input = GetUrl)]
pub async fn get_limit_advice(name: String) -> Result<Option<leakscope_model::LimitAdvice>, ServerFnError> {
    engine()?.limit_advice(&name).await.map_err(|e| ServerFnError::new(e.to_string()))
}

/// Log lines of the minute around `at` (Unix ms), at most 500.
#[server(input = GetUrl)]
pub async fn get_logs(name: String, at: i64) -> Result<leakscope_model::LogExcerpt, ServerFnError> {
    engine()?.logs(&name, at - 30_000, at + 30_000, 500).await.map_err(|e| ServerFnError::new(e.to_string()))
}

/// The signed-in user or token (the server's guard put it on the request).
#[server(input = GetUrl)]
pub async fn get_me() -> Result<Option<leakscope_model::Me>, ServerFnError> {
    Ok(use_context::<http::request::Parts>().and_then(|parts| parts.extensions.get::<leakscope_model::Me>().cloned()))
}

mod admin;
mod reports;
pub use admin::{check_setup_link, get_admin, setup_pending};
pub use reports::{get_public_report, get_report, list_reports};

/// The principal the server's guard put on the request (`None` signed out).
#[cfg(feature = "ssr")]
fn principal() -> Option<leakscope_access::Principal> {
    use_context::<http::request::Parts>().and_then(|parts| parts.extensions.get::<leakscope_access::Principal>().cloned())
}

/// Server functions are reachable over HTTP at their own URLs, which the
/// route policy treats as reads: the ones that need more check it here.
#[cfg(feature = "ssr")]
fn require(role: leakscope_access::Role) -> Result<leakscope_access::Principal, ServerFnError> {
    match principal() {
        Some(p) if p.role >= role => Ok(p),
        Some(p) => {
            set_status(http::StatusCode::FORBIDDEN);
            Err(ServerFnError::new(format!("this needs the {role} role; {} is a {}", p.name, p.role)))
        }
        None => {
            set_status(http::StatusCode::UNAUTHORIZED);
            Err(ServerFnError::new("sign in first"))
        }
    }
}

#[cfg(feature = "ssr")]
fn set_status(status: http::StatusCode) {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(status);
    }
}

/// Pages that show secrets (a new token) or private data must not be kept by caches.
#[cfg(feature = "ssr")]
fn no_store() {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.insert_header(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    }
}

#[cfg(feature = "ssr")]
fn notifier() -> Result<std::sync::Arc<leakscope_notify::Notifier>, ServerFnError> {
    use_context::<std::sync::Arc<leakscope_notify::Notifier>>().ok_or_else(|| ServerFnError::new("notifier missing from context"))
}

#[cfg(feature = "ssr")]
fn access() -> Result<leakscope_access::SharedAccess, ServerFnError> {
    use_context::<leakscope_access::SharedAccess>().ok_or_else(|| ServerFnError::new("access store missing from context"))
}
