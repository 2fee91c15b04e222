//! Host agents: an admin makes a one-time enrollment token; an agent trades
//! it once for a credential of its own (only hashes are stored, as for API
//! tokens); an admin can revoke an agent, which ends its connection at once.

use leakscope_db::sqlx::{self, Row};
use serde::{Deserialize, Serialize};

use crate::{new_secret, secret_hash, AccessError, AccessStore};

// The tables are in the access store's migrations (`crate::store`).

/// How long an enrollment token can be used.
pub const ENROLLMENT_TTL_MS: i64 = 24 * 3600 * 1000;

/// An enrolled agent as admins see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentInfo {
    pub id: i64,
    /// Stable id the agent made for its host (not the engine's ID, which clones of a VM image share).
    pub host_id: String,
    /// Display name of the host.
    pub name: String,
    pub enrolled_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
}

/// What an agent's credential proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPrincipal {
    pub id: i64,
    pub host_id: String,
    pub name: String,
}

/// Host names go into URLs (`/hosts/<name>/…`) and metric labels: a DNS-like name, and not
/// one of the hub's own engines (whose containers an agent of that name would be taken for).
fn check_host_name(name: &str, hub_hosts: &[String]) -> Result<(), AccessError> {
    let fine = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !fine {
        return Err(AccessError::Invalid(format!("{name:?} is not a host name: 1 to 64 letters, digits, '.', '-' or '_'")));
    }
    if hub_hosts.iter().any(|h| h == name) {
        return Err(AccessError::Invalid(format!("{name} is the name of an engine the hub reaches itself: give this agent another name (--name, or with its token)")));
    }
    Ok(())
}

impl AccessStore {
    /// A one-time enrollment token (`lse_…`), valid a day. `name`: the host's display name, else the agent's choice.
    /// `hub_hosts`: the names of the engines the hub reaches itself, which no agent may take.
    pub fn create_enrollment(&self, name: Option<&str>, created_by: Option<&str>, hub_hosts: &[String], now_ms: i64) -> Result<String, AccessError> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if let Some(name) = name {
            check_host_name(name, hub_hosts)?;
        }
        let secret = new_secret("lse_")?;
        self.db.run(async {
            sqlx::query("INSERT INTO agent_enrollments (token_hash, name, created_ms, created_by, expires_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(secret_hash(&secret))
                .bind(name)
                .bind(now_ms)
                .bind(created_by)
                .bind(now_ms + ENROLLMENT_TTL_MS)
                .execute(self.db.pool())
                .await
        })?;
        Ok(secret)
    }

    /// Trades an unused, unexpired enrollment token for an agent credential (`lsa_…`), once.
    /// A host enrolling again (same `host_id`) replaces its earlier credential.
    pub fn enroll_agent(&self, token: &str, host_id: &str, name: &str, hub_hosts: &[String], now_ms: i64) -> Result<(AgentInfo, String), AccessError> {
        let host_id = host_id.trim();
        if host_id.is_empty() || host_id.len() > 128 {
            return Err(AccessError::Invalid("a host id is 1 to 128 characters".into()));
        }
        let enrollment: Option<(i64, Option<String>, i64, Option<i64>)> = self.db.run(async {
            let row = sqlx::query("SELECT id, name, expires_ms, used_by_agent FROM agent_enrollments WHERE token_hash = $1")
                .bind(secret_hash(token))
                .fetch_optional(self.db.pool())
                .await?;
            row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))).transpose()
        })?;
        let (enrollment_id, given_name) = match enrollment {
            None => return Err(AccessError::Invalid("that enrollment token is unknown".into())),
            Some((_, _, _, Some(_))) => return Err(AccessError::Invalid("that enrollment token was used already; make a new one".into())),
            Some((_, _, expires, None)) if expires <= now_ms => {
                return Err(AccessError::Invalid("that enrollment token expired; make a new one".into()))
            }
            Some((id, name, _, None)) => (id, name),
        };
        let name = given_name.unwrap_or_else(|| name.trim().to_string());
        check_host_name(&name, hub_hosts)?;
        let taken: i64 = self.db.run(async {
            sqlx::query("SELECT COUNT(*) FROM agents WHERE name = $1 AND host_id <> $2 AND revoked_ms IS NULL")
                .bind(&name)
                .bind(host_id)
                .fetch_one(self.db.pool())
                .await?
                .try_get(0)
        })?;
        if taken > 0 {
            return Err(AccessError::Invalid(format!("another host's agent is called {name}: give this one another name (--name, or with its token)")));
        }
        let credential = new_secret("lsa_")?;
        let id: i64 = self.db.run(async {
            let mut tx = self.db.begin_write().await?;
            sqlx::query("UPDATE agents SET revoked_ms = $2 WHERE host_id = $1 AND revoked_ms IS NULL").bind(host_id).bind(now_ms).execute(&mut *tx).await?;
            let id: i64 = sqlx::query("INSERT INTO agents (host_id, name, credential_hash, enrolled_ms) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(host_id)
                .bind(&name)
                .bind(secret_hash(&credential))
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            sqlx::query("UPDATE agent_enrollments SET used_by_agent = $2 WHERE id = $1").bind(enrollment_id).bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(id)
        })?;
        let info = AgentInfo { id, host_id: host_id.to_string(), name, enrolled_ms: now_ms, revoked_ms: None, last_seen_ms: None };
        Ok((info, credential))
    }

    /// The agent a credential belongs to, unless revoked.
    pub fn agent(&self, credential: &str) -> Result<Option<AgentPrincipal>, AccessError> {
        Ok(self.db.run(async {
            let row = sqlx::query("SELECT id, host_id, name FROM agents WHERE credential_hash = $1 AND revoked_ms IS NULL")
                .bind(secret_hash(credential))
                .fetch_optional(self.db.pool())
                .await?;
            row.map(|r| Ok(AgentPrincipal { id: r.try_get(0)?, host_id: r.try_get(1)?, name: r.try_get(2)? })).transpose()
        })?)
    }

    pub fn agents(&self) -> Result<Vec<AgentInfo>, AccessError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT id, host_id, name, enrolled_ms, revoked_ms, last_seen_ms FROM agents ORDER BY id").fetch_all(self.db.pool()).await?;
            rows.iter()
                .map(|r| {
                    Ok(AgentInfo {
                        id: r.try_get(0)?,
                        host_id: r.try_get(1)?,
                        name: r.try_get(2)?,
                        enrolled_ms: r.try_get(3)?,
                        revoked_ms: r.try_get(4)?,
                        last_seen_ms: r.try_get(5)?,
                    })
                })
                .collect()
        })?)
    }

    pub fn agent_seen(&self, id: i64, now_ms: i64) -> Result<(), AccessError> {
        self.db.run(async { sqlx::query("UPDATE agents SET last_seen_ms = $2 WHERE id = $1").bind(id).bind(now_ms).execute(self.db.pool()).await })?;
        Ok(())
    }

    /// False when there was no such active agent.
    pub fn revoke_agent(&self, id: i64, now_ms: i64) -> Result<bool, AccessError> {
        let done = self.db.run(async {
            sqlx::query("UPDATE agents SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL").bind(id).bind(now_ms).execute(self.db.pool()).await
        })?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrollment_token_is_traded_once_for_a_credential_that_revocation_ends() {
        for (_dir, store) in crate::store::tests::stores() {
            traded_once_on(store);
        }
    }

    fn traded_once_on(store: AccessStore) {
        let token = store.create_enrollment(Some("payments-1"), Some("ann"), &[], 1_000).unwrap();
        assert!(token.starts_with("lse_"));
        let (agent, credential) = store.enroll_agent(&token, "host-abc", "ignored", &[], 2_000).unwrap();
        assert_eq!(agent.name, "payments-1", "the admin's name wins");
        assert_eq!(store.agent(&credential).unwrap().unwrap().host_id, "host-abc");
        let again = store.enroll_agent(&token, "host-xyz", "x", &[], 3_000).unwrap_err();
        assert!(again.to_string().contains("used already"), "{again}");
        assert!(store.enroll_agent("lse_nope", "h", "x", &[], 3_000).unwrap_err().to_string().contains("unknown"));
        let late = store.create_enrollment(None, None, &[], 0).unwrap();
        assert!(store.enroll_agent(&late, "h", "x", &[], ENROLLMENT_TTL_MS + 1).unwrap_err().to_string().contains("expired"));

        // The same host enrolling again replaces its credential.
        let second = store.create_enrollment(None, None, &[], 4_000).unwrap();
        let (replacement, new_credential) = store.enroll_agent(&second, "host-abc", "payments-1b", &[], 5_000).unwrap();
        assert!(store.agent(&credential).unwrap().is_none());
        assert_eq!(store.agent(&new_credential).unwrap().unwrap().name, "payments-1b");
        store.agent_seen(replacement.id, 6_000).unwrap();
        assert!(store.revoke_agent(replacement.id, 7_000).unwrap());
        assert!(!store.revoke_agent(replacement.id, 7_000).unwrap());
        assert!(store.agent(&new_credential).unwrap().is_none());
        let listed = store.agents().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].last_seen_ms, Some(6_000));
        assert_eq!(listed[1].revoked_ms, Some(7_000));
    }

    #[test]
    fn host_names_fit_in_urls_and_are_not_shared() {
        for (_dir, store) in crate::store::tests::stores() {
            host_names_on(store);
        }
    }

    fn host_names_on(store: AccessStore) {
        assert!(store.create_enrollment(Some("a/b"), None, &[], 0).is_err());
        let first = store.create_enrollment(None, None, &[], 0).unwrap();
        assert!(store.enroll_agent(&first, "h1", "has space", &[], 1).unwrap_err().to_string().contains("not a host name"));
        store.enroll_agent(&first, "h1", "edge-1", &[], 1).unwrap();
        let second = store.create_enrollment(None, None, &[], 0).unwrap();
        let taken = store.enroll_agent(&second, "h2", "edge-1", &[], 2).unwrap_err();
        assert!(taken.to_string().contains("another host's agent"), "{taken}");
        // The token was not spent on the refusals.
        let hub = ["hub-host".to_string()];
        assert!(store.create_enrollment(Some("hub-host"), None, &hub, 0).unwrap_err().to_string().contains("the hub reaches itself"));
        let own = store.enroll_agent(&second, "h2", "hub-host", &hub, 2).unwrap_err();
        assert!(own.to_string().contains("the hub reaches itself"), "{own}");
        store.enroll_agent(&second, "h2", "edge-2", &hub, 3).unwrap();
    }
}
