//! The last line of defence: a panic in any handler or page render becomes a
//! 500 with a message (JSON for the API, a short page otherwise), is logged
//! with its route, and is counted (`handler_panics` in `/api/v1/engine`).
//! Without this a panicking request closes the connection: the client sees an
//! empty reply and nobody learns why.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use super::HttpError;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Panics caught since the process started.
pub fn count() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// A fixed page: nothing from the request or the panic goes into it.
const PAGE: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error · Leakscope</title>\
<link rel=\"stylesheet\" href=\"/pkg/leakscope.css\"></head><body><main class=\"page narrow\"><h1>Something went wrong</h1>\
<p>Leakscope hit an internal error while rendering this page. It has been logged with the route; reload to try again, \
and if it happens again, please report it with the server log.</p><p><a href=\"/\">All containers</a></p></main></body></html>";

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

pub async fn catch_panics(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let n = PANICS.fetch_add(1, Ordering::Relaxed) + 1;
            let what = message(payload.as_ref());
            tracing::error!(%method, route = %path, panic = %what, total = n, "a request panicked; answered 500");
            if path.starts_with("/api/") {
                HttpError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error (logged as panic #{n}): {what}")).into_response()
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], PAGE)
                    .into_response()
            }
        }
    }
}
