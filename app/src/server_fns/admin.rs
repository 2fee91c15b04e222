//! Server functions of the sign-in, setup and admin pages. The forms on
//! those pages post to the server's own handlers (they set cookies and
//! redirect); these only read.

use leakscope_model::admin::AdminView;
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::{access, no_store, notifier, require, set_status};

/// Whether `/setup/<secret>` is still the first-run link (a 404 page otherwise).
#[server(input = GetUrl)]
pub async fn check_setup_link(secret: String) -> Result<bool, ServerFnError> {
    let valid = access()?.setup_secret_ok(&secret);
    if !valid {
        set_status(http::StatusCode::NOT_FOUND);
    }
    no_store();
    Ok(valid)
}

/// Users, tokens, webhooks and the last 200 audit entries, plus a token this admin just created (once).
#[server(input = GetUrl)]
pub async fn get_admin() -> Result<AdminView, ServerFnError> {
    use leakscope_model::admin::{AuditRow, TokenRow, UserRow};
    let me = require(leakscope_access::Role::Admin)?;
    let access = access()?;
    let (users, tokens, audit, agents) = access
        .with(|s| Ok((s.users()?, s.tokens()?, s.audit_log(200)?, s.agents()?)))
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let webhooks = notifier()?.webhooks().await.map_err(|e| ServerFnError::new(e.to_string()))?;
    no_store();
    Ok(AdminView {
        webhooks,
        agents: agents
            .into_iter()
            .map(|a| leakscope_model::admin::AgentRow { id: a.id, name: a.name, host_id: a.host_id, enrolled_ms: a.enrolled_ms, revoked_ms: a.revoked_ms, last_seen_ms: a.last_seen_ms })
            .collect(),
        users: users.into_iter().map(|u| UserRow { id: u.id, name: u.name, role: u.role.to_string(), created_ms: u.created_ms, hosts: u.hosts }).collect(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenRow { id: t.id, name: t.name, role: t.role.to_string(), created_ms: t.created_ms, created_by: t.created_by, revoked_ms: t.revoked_ms, hosts: t.hosts })
            .collect(),
        audit: {
            let own = super::engine()?.host_name();
            audit.into_iter().map(|a| AuditRow { t_ms: a.t_ms, actor: a.actor, action: a.action, target: a.target, detail: a.detail, host: a.host.unwrap_or_else(|| own.clone()) }).collect()
        },
        new_token: access.take_flash(&me.name),
    })
}

/// Whether no admin exists yet (the sign-in page then points at the console's setup link).
#[server(input = GetUrl)]
pub async fn setup_pending() -> Result<bool, ServerFnError> {
    Ok(access()?.setup_path().is_some())
}
