//! The access store's errors as HTTP answers.

use axum::http::StatusCode;
use leakscope_access::AccessError;

use super::HttpError;

impl From<AccessError> for HttpError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Invalid(message) => HttpError(StatusCode::BAD_REQUEST, message),
            AccessError::Db(db) if db.is_unavailable() => {
                tracing::warn!(error = %db, "access store unavailable");
                HttpError(StatusCode::SERVICE_UNAVAILABLE, format!("the database is unavailable right now (retry shortly): {db}"))
            }
            other => {
                tracing::error!(error = %other, "access store");
                HttpError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}
