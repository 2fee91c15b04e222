//! Notifications: what can be sent, and the webhooks it is sent to.

use serde::{Deserialize, Serialize};

/// An OOM kill as the engine reported it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OomKill {
    pub container: String,
    pub host: String,
    pub time_ms: i64,
}

/// A webhook as the admin page and the API list it. The URL is a secret (an
/// incoming-webhook URL lets anyone post to the channel): only its origin is shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookInfo {
    pub id: i64,
    pub name: String,
    /// `json` (our own shape), `slack`, `mattermost` or `teams`.
    pub kind: String,
    /// Scheme, host and port of the URL; the path (which holds the secret) is not shown.
    pub destination: String,
    pub created_ms: i64,
    pub created_by: Option<String>,
    /// The last delivery: when, and `delivered (HTTP 200)` or why it failed.
    pub last_result: Option<String>,
    pub last_result_ms: Option<i64>,
}

/// A new webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewWebhook {
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    /// `json` (default), `slack`, `mattermost` or `teams`.
    #[serde(default)]
    pub kind: Option<String>,
}

/// What a test delivery did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryResult {
    pub delivered: bool,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// In words: `delivered (HTTP 200)`, or why not.
    pub detail: String,
}
