//! What every HTTP handler shares: the state it can reach, the one error
//! type and its mapping to a status, and the small parsing helpers. Handler
//! modules use this module and never each other.

pub mod access;
pub mod api_errors;
pub mod images;
pub mod panics;
pub mod query;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use leakscope_engine::{now_ms, Engine, EngineError};
use leakscope_model::{ApiError, TimeRange};
use leptos::prelude::LeptosOptions;
use serde::Deserialize;

pub use leakscope_access::{AccessState, SharedAccess};

/// What every handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub engine: Engine,
    pub access: SharedAccess,
    pub notifier: std::sync::Arc<leakscope_notify::Notifier>,
    pub hub: std::sync::Arc<crate::agent_link::AgentHub>,
}

/// After an admin form: back to `/admin`, with the error in its banner, or a notice.
pub fn admin_back(result: Result<(), HttpError>) -> Response {
    admin_back_with(result.map(|()| None))
}

pub fn admin_back_with(result: Result<Option<String>, HttpError>) -> Response {
    use axum::response::Redirect;
    match result {
        Ok(None) => Redirect::to("/admin").into_response(),
        Ok(Some(notice)) => Redirect::to(&format!("/admin?notice={}", query::encode(&notice))).into_response(),
        Err(e) => Redirect::to(&format!("/admin?error={}", query::encode(&e.1))).into_response(),
    }
}

impl From<leakscope_notify::NotifyError> for HttpError {
    fn from(e: leakscope_notify::NotifyError) -> Self {
        match e {
            leakscope_notify::NotifyError::Invalid(m) => HttpError(StatusCode::BAD_REQUEST, m),
            other => {
                tracing::error!(error = %other, "notification settings failed");
                HttpError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}

/// An error answer: JSON `{"error": ...}` with the status that fits.
pub struct HttpError(pub StatusCode, pub String);

impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::UnknownContainer(_) | EngineError::UnknownDump(_) | EngineError::UnknownReport(_) | EngineError::UnknownObject { .. } => {
                StatusCode::NOT_FOUND
            }
            EngineError::AnalysisPending(_) => StatusCode::ACCEPTED,
            EngineError::AnalysisFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            EngineError::EngineUnreachable { .. } | EngineError::DumpStoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Database(db) if db.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "request failed");
        }
        HttpError(status, e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

/// The range part of a query: `range=1h`, or `from`/`to` (RFC 3339, Unix
/// seconds, or local `YYYY-MM-DDTHH:MM` with `tz` minutes east of UTC).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// A preset back from now: `15m`, `1h`, `6h`, `24h`, `7d`, `30d`, `90d`, `1y`.
    pub range: Option<String>,
    /// Start: RFC 3339, Unix seconds, or local `YYYY-MM-DDTHH:MM` with `tz`.
    pub from: Option<String>,
    /// End, as `from`; default now.
    pub to: Option<String>,
    /// Minutes east of UTC for local `from`/`to`.
    /// Kept as text: numbers inside `#[serde(flatten)]` do not deserialize from query strings.
    pub tz: Option<String>,
}

impl RangeQuery {
    /// The viewer's zone in minutes east of UTC (0 when absent).
    pub fn tz_minutes(&self) -> Result<i32, HttpError> {
        match self.tz.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(0),
            Some(t) => t
                .parse::<i32>()
                .ok()
                .filter(|m| m.abs() <= 24 * 60)
                .ok_or_else(|| HttpError(StatusCode::BAD_REQUEST, format!("'tz' must be minutes east of UTC, got '{t}'"))),
        }
    }

    pub fn resolve(&self) -> Result<TimeRange, HttpError> {
        TimeRange::from_query(
            self.range.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            self.tz_minutes()?,
            now_ms(),
        )
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, e.to_string()))
    }
}

