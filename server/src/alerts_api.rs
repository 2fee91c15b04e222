//! Webhooks for notifications (admins): the API and the admin page's forms.
//! Handlers parse, call the notifier and map errors; nothing else.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Form, Json, Router};
use leakscope_access::Principal;
use leakscope_model::alerts::{DeliveryResult, NewWebhook, WebhookInfo};
use leakscope_notify::Notifier;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::{admin_back, admin_back_with, AppState, HttpError};

/// The documented routes (see `openapi.rs`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(remove)).routes(routes!(test))
}

/// The admin page's forms.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", post(create_form))
        .route("/admin/webhooks/{id}/delete", post(remove_form))
        .route("/admin/webhooks/{id}/test", post(test_form))
}

/// Webhooks that get notifications (new leak verdicts, OOM kills, a share of the limit crossed).
/// URLs are secrets: only where they go is shown.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "access", responses((status = 200, body = Vec<WebhookInfo>)))]
async fn list(State(notifier): State<Arc<Notifier>>) -> Result<Json<Vec<WebhookInfo>>, HttpError> {
    Ok(Json(notifier.webhooks().await?))
}

/// Add a webhook (audited). `kind`: `json` (default), `slack`, `mattermost` or `teams`.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "access", request_body = NewWebhook,
    responses((status = 201, body = WebhookInfo), (status = 400, body = leakscope_model::ApiError),
        (status = 415, description = "the body is not `application/json`", body = leakscope_model::ApiError),
        (status = 422, description = "the JSON does not match NewWebhook", body = leakscope_model::ApiError)))]
async fn create(State(notifier): State<Arc<Notifier>>, Extension(p): Extension<Principal>, Json(body): Json<NewWebhook>) -> Result<impl IntoResponse, HttpError> {
    Ok((StatusCode::CREATED, Json(notifier.add_webhook(body, &p.name).await?)))
}

/// Remove a webhook (audited).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "access", params(("id" = i64, Path, description = "webhook id")),
    responses((status = 204, description = "removed"), (status = 400, body = leakscope_model::ApiError), (status = 404, body = leakscope_model::ApiError)))]
async fn remove(State(notifier): State<Arc<Notifier>>, Extension(p): Extension<Principal>, Path(id): Path<i64>) -> Result<StatusCode, HttpError> {
    if !notifier.remove_webhook(id, &p.name).await? {
        return Err(HttpError(StatusCode::NOT_FOUND, format!("no webhook {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Send a test message to one webhook now; the answer says whether it arrived (audited either way).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "access", params(("id" = i64, Path, description = "webhook id")),
    responses((status = 200, body = DeliveryResult), (status = 400, body = leakscope_model::ApiError), (status = 404, body = leakscope_model::ApiError)))]
async fn test(State(notifier): State<Arc<Notifier>>, Extension(p): Extension<Principal>, Path(id): Path<i64>) -> Result<Json<DeliveryResult>, HttpError> {
    match notifier.test_webhook(id, &p.name).await? {
        Some(result) => Ok(Json(result)),
        None => Err(HttpError(StatusCode::NOT_FOUND, format!("no webhook {id}"))),
    }
}

async fn create_form(state: State<Arc<Notifier>>, p: Extension<Principal>, Form(body): Form<NewWebhook>) -> Response {
    admin_back(create(state, p, Json(body)).await.map(|_| ()))
}

async fn remove_form(state: State<Arc<Notifier>>, p: Extension<Principal>, id: Path<i64>) -> Response {
    admin_back(remove(state, p, id).await.map(|_| ()))
}

/// The result goes back to the admin page's banner: an error when it did not arrive.
async fn test_form(state: State<Arc<Notifier>>, p: Extension<Principal>, id: Path<i64>) -> Response {
    admin_back_with(test(state, p, id).await.and_then(|Json(result)| {
        if result.delivered {
            Ok(Some(format!("Test message {}", result.detail)))
        } else {
            Err(HttpError(StatusCode::BAD_GATEWAY, format!("The test message was {}", result.detail)))
        }
    }))
}
