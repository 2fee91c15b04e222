//! What the admin page shows: accounts, API tokens, webhooks, the audit log.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_ms: i64,
    /// Host patterns the role is limited to (a viewer elsewhere); absent: every host.
    #[serde(default)]
    pub hosts: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_ms: i64,
    pub created_by: Option<String>,
    pub revoked_ms: Option<i64>,
    /// Host patterns the role is limited to (a viewer elsewhere); absent: every host.
    #[serde(default)]
    pub hosts: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRow {
    pub t_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
    /// The host the action was done on.
    pub host: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminView {
    pub users: Vec<UserRow>,
    pub tokens: Vec<TokenRow>,
    pub audit: Vec<AuditRow>,
    /// A token created a moment ago by this admin: shown on this one page, then gone.
    pub new_token: Option<String>,
    /// Where notifications go.
    #[serde(default)]
    pub webhooks: Vec<crate::alerts::WebhookInfo>,
    /// Host agents enrolled with this hub.
    #[serde(default)]
    pub agents: Vec<AgentRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub host_id: String,
    pub enrolled_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
}
