//! Who may do what in Leakscope: accounts with roles, browser sessions, API
//! tokens, the route policy (which role each route needs) and the audit log.
//!
//! Passwords are hashed with argon2. Session and API tokens are 256-bit
//! random secrets; only their SHA-256 is stored (a fast hash is enough for
//! secrets with that much entropy, and it allows lookup by hash).

mod agents;
mod hosts;
mod policy;
mod shared;
mod store;
mod throttle;

pub use agents::{AgentInfo, AgentPrincipal, ENROLLMENT_TTL_MS};
pub use hosts::{host_of_request, normalise as normalise_hosts};
pub use policy::{required_access, Access};
pub use store::{AccessStore, AuditEntry, Principal, Session, TokenInfo, UserInfo, TABLES};
pub use shared::{lock, same_secret, AccessState, SharedAccess};
pub use throttle::LoginThrottle;

use serde::{Deserialize, Serialize};

/// Roles in increasing power; each can do everything the ones before it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Dashboards, dump lists, analyses, reports.
    Viewer,
    /// Also capture, download dumps, create and share reports.
    Operator,
    /// Also users, tokens and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, AccessError> {
        match s.trim() {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(AccessError::Invalid(format!("'{other}' is not a role (viewer, operator or admin)"))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Db(#[from] leakscope_db::DbError),
    #[error("{0}")]
    Internal(String),
}

/// A new random secret: `prefix` + 64 hex characters (256 bits).
pub fn new_secret(prefix: &str) -> Result<String, AccessError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AccessError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is stored for a secret.
pub fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(secret.as_bytes()))
}
