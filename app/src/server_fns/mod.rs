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
pub async fn get_container(name: String, host: Option<String>) -> Result<Option<ContainerDetail>, ServerFnError> {
    if let Some(answer) = on_host(&host, GetContainer { name: name.clone(), host: None }).await {
        return answer;
    }
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
pub async fn list_dumps(filter: DumpFilter, host: Option<String>) -> Result<Vec<leakscope_model::dumps::DumpInfo>, ServerFnError> {
    if let Some(answer) = on_host(&host, ListDumps { filter: filter.clone(), host: None }).await {
        return answer;
    }
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
pub async fn get_capture(container: String, job_id: Option<String>, host: Option<String>) -> Result<Option<CaptureJob>, ServerFnError> {
    if let Some(answer) = on_host(&host, GetCapture { container: container.clone(), job_id: job_id.clone(), host: None }).await {
        return answer;
    }
    let engine = engine()?;
    Ok(match job_id.filter(|j| !j.is_empty()) {
        Some(id) => engine.capture_job_anywhere(&id).await,
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
pub async fn get_dump(id: String, node: Option<String>, host: Option<String>) -> Result<Option<DumpPage>, ServerFnError> {
    if let Some(answer) = on_host(&host, GetDump { id: id.clone(), node: node.clone(), host: None }).await {
        return answer;
    }
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
pub async fn get_diff(before: String, after: String, host: Option<String>) -> Result<leakscope_model::analysis::HeapDiff, ServerFnError> {
    if let Some(answer) = on_host(&host, GetDiff { before: before.clone(), after: after.clone(), host: None }).await {
        return answer;
    }
    engine()?.dump_diff(&before, &after).await.map_err(|e| ServerFnError::new(e.to_string()))
}

/// A container's lifecycle events of the last 7 days, newest first (at most 50).
#[server(input = GetUrl)]
pub async fn get_events(name: String, host: Option<String>) -> Result<Vec<leakscope_model::ContainerEvent>, ServerFnError> {
    if let Some(answer) = on_host(&host, GetEvents { name: name.clone(), host: None }).await {
        return answer;
    }
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
pub async fn get_limit_advice(name: String, host: Option<String>) -> Result<Option<leakscope_model::LimitAdvice>, ServerFnError> {
    if let Some(answer) = on_host(&host, GetLimitAdvice { name: name.clone(), host: None }).await {
        return answer;
    }
    engine()?.limit_advice(&name).await.map_err(|e| ServerFnError::new(e.to_string()))
}

/// Log lines of the minute around `at` (Unix ms), at most 500.
#[server(input = GetUrl)]
pub async fn get_logs(name: String, at: i64, host: Option<String>) -> Result<leakscope_model::LogExcerpt, ServerFnError> {
    if let Some(answer) = on_host(&host, GetLogs { name: name.clone(), at, host: None }).await {
        return answer;
    }
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

/// Hosts reached through an agent: the hub forwards a server function's call to the agent's
/// own copy of it (the same route, arguments and answer), so pages work alike on every host.
#[cfg(feature = "ssr")]
pub trait RemoteHosts: Send + Sync {
    /// Whether `host` is reached through an agent rather than this server's own engine.
    fn is_remote(&self, host: &str) -> bool;
    /// GET `uri` on `host`'s app as `principal`: the status and the whole body.
    fn get(&self, host: &str, uri: String, principal: leakscope_access::Principal) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(u16, Vec<u8>), String>> + Send>>;
}

/// Another host's answers during one request (see `on_host`); the server provides one per request.
#[cfg(feature = "ssr")]
#[derive(Clone, Default)]
pub struct HostAnswers(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u16, Vec<u8>)>>>);

#[cfg(feature = "ssr")]
fn lock_answers(answers: &HostAnswers) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u16, Vec<u8>)>> {
    answers.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Some(answer)` when `host` is another host's: the same call, answered there.
#[cfg(feature = "ssr")]
async fn on_host<S, T>(host: &Option<String>, call: S) -> Option<Result<T, ServerFnError>>
where
    S: leptos::server_fn::ServerFn + serde::Serialize,
    T: serde::de::DeserializeOwned,
{
    let host = host.as_deref().filter(|h| !h.is_empty())?;
    let remote = use_context::<std::sync::Arc<dyn RemoteHosts>>()?;
    if !remote.is_remote(host) {
        return None;
    }
    Some(
        async {
            let principal = principal().ok_or_else(|| ServerFnError::new("sign in first"))?;
            let query = serde_qs::to_string(&call).map_err(|e| ServerFnError::new(e.to_string()))?;
            let uri = format!("{}?{query}", S::PATH);
            // A page's render runs its server functions again once their first answers are in
            // (resources inside a resolved `Suspense` are made anew): the second time they must
            // answer at once, as local ones do, or the render never settles.
            let answers = use_context::<HostAnswers>().unwrap_or_default();
            let key = format!("{host} {uri}");
            let cached = lock_answers(&answers).get(&key).cloned();
            let (status, body) = match cached {
                Some(answer) => answer,
                None => {
                    let answer = remote.get(host, uri, principal).await.map_err(ServerFnError::new)?;
                    lock_answers(&answers).insert(key, answer.clone());
                    answer
                }
            };
            if status == 404 {
                set_status(http::StatusCode::NOT_FOUND);
            } else if status >= 400 {
                return Err(ServerFnError::new(format!("host {host}: {}", String::from_utf8_lossy(&body))));
            }
            serde_json::from_slice(&body).map_err(|e| ServerFnError::new(format!("host {host} answered in a form this server does not read: {e}")))
        }
        .await,
    )
}

#[cfg(feature = "ssr")]
fn notifier() -> Result<std::sync::Arc<leakscope_notify::Notifier>, ServerFnError> {
    use_context::<std::sync::Arc<leakscope_notify::Notifier>>().ok_or_else(|| ServerFnError::new("notifier missing from context"))
}

#[cfg(feature = "ssr")]
fn access() -> Result<leakscope_access::SharedAccess, ServerFnError> {
    use_context::<leakscope_access::SharedAccess>().ok_or_else(|| ServerFnError::new("access store missing from context"))
}
