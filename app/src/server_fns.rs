//! Server functions: thin calls into the engine. The JSON API in the server
//! crate calls the same engine methods.

use leakscope_model::{ContainerDetail, Overview};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
fn engine() -> Result<leakscope_engine::Engine, ServerFnError> {
    use_context::<leakscope_engine::Engine>().ok_or_else(|| ServerFnError::new("engine missing from context"))
}

/// Everything the dashboard shows; answers even while the engine is down
/// (the overview then carries the reason).
#[server]
pub async fn get_overview() -> Result<Overview, ServerFnError> {
    Ok((*engine()?.overview()).clone())
}

/// One container, live or from history. `Ok(None)` when Leakscope never saw it.
#[server]
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
