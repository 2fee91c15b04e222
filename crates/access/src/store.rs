//! Accounts, sessions, tokens and the audit log in the dashboard's SQLite file.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::{new_secret, secret_hash, AccessError, Role};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    t_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT,
    host TEXT
);
";

/// Sessions last a week of inactivity-independent time.
const SESSION_MS: i64 = 7 * 24 * 3600 * 1000;
const MIN_PASSWORD: usize = 10;

/// Who is asking: a signed-in user or an API token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[derive(utoipa::ToSchema)]
pub struct Principal {
    /// `alice`, or `token:ci` for API tokens.
    pub name: String,
    pub role: Role,
    /// Set for browser sessions: state-changing requests must echo it.
    pub csrf: Option<String>,
    /// Host patterns (`payments-*,db1`) the role holds on; elsewhere this
    /// principal is a viewer. `None`: every host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
}

impl Principal {
    /// The role this principal has on `host`.
    pub fn role_on(&self, host: &str) -> Role {
        match &self.hosts {
            Some(patterns) if !crate::hosts::matches_any(patterns, host) => self.role.min(Role::Viewer),
            _ => self.role,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie value (only its hash is stored).
    pub token: String,
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Clone, Debug, Serialize)]
#[derive(utoipa::ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    /// Host patterns the role is limited to (viewer elsewhere); absent: every host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[derive(utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub created_by: Option<String>,
    pub revoked_ms: Option<i64>,
    /// Host patterns the role is limited to (viewer elsewhere); absent: every host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[derive(utoipa::ToSchema)]
pub struct AuditEntry {
    pub t_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
    /// The host the action was done on (the API fills in this server's own where it was stored empty).
    pub host: Option<String>,
}

pub struct AccessStore {
    pub(crate) conn: Connection,
}

fn role_of(text: String) -> Role {
    // An unknown word in the database grants the least.
    text.parse().unwrap_or(Role::Viewer)
}

impl AccessStore {
    pub fn open(db: &Path) -> Result<Self, AccessError> {
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // As the engine's connections: a bounded page cache (see leakscope_engine::store).
        conn.pragma_update(None, "cache_size", -1024)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::agents::SCHEMA)?;
        // Added after the first release: roles limited to hosts.
        for table in ["users", "api_tokens"] {
            let has: bool = conn.query_row(&format!("SELECT EXISTS(SELECT 1 FROM pragma_table_info('{table}') WHERE name = 'hosts')"), [], |r| r.get(0))?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN hosts TEXT"))?;
            }
        }
        // Added later: the host an audited action was done on (NULL: this server's own).
        let has: bool = conn.query_row("SELECT EXISTS(SELECT 1 FROM pragma_table_info('audit') WHERE name = 'host')", [], |r| r.get(0))?;
        if !has {
            conn.execute_batch("ALTER TABLE audit ADD COLUMN host TEXT")?;
        }
        Ok(AccessStore { conn })
    }

    pub fn has_admin(&self) -> Result<bool, AccessError> {
        Ok(self.conn.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE role = 'admin')", [], |r| r.get(0))?)
    }

    pub fn create_user(&self, name: &str, password: &str, role: Role, now_ms: i64) -> Result<UserInfo, AccessError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
            return Err(AccessError::Invalid("a user name is 1 to 64 letters, digits, '.', '_', '-' or '@'".into()));
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(AccessError::Invalid(format!("a password needs at least {MIN_PASSWORD} characters")));
        }
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).map_err(|e| AccessError::Internal(format!("no randomness: {e}")))?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AccessError::Internal(format!("salt: {e}")))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccessError::Internal(format!("hashing: {e}")))?
            .to_string();
        let inserted = self.conn.execute(
            "INSERT INTO users (name, password_hash, role, created_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO NOTHING",
            params![name, hash, role.as_str(), now_ms],
        )?;
        if inserted == 0 {
            return Err(AccessError::Invalid(format!("a user named {name} exists already")));
        }
        Ok(UserInfo { id: self.conn.last_insert_rowid(), name: name.to_string(), role, created_ms: now_ms, hosts: None })
    }

    /// The user when the password matches; `None` otherwise (same answer for an unknown name).
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<UserInfo>, AccessError> {
        let row: Option<(i64, String, String, i64, Option<String>)> = self
            .conn
            .query_row("SELECT id, password_hash, role, created_ms, hosts FROM users WHERE name = ?1", [name.trim()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((id, stored, role, created_ms, hosts)) = row else {
            return Ok(None);
        };
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return Ok(None);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            .then(|| UserInfo { id, name: name.trim().to_string(), role: role_of(role), created_ms, hosts }))
    }

    pub fn users(&self) -> Result<Vec<UserInfo>, AccessError> {
        let mut stmt = self.conn.prepare("SELECT id, name, role, created_ms, hosts FROM users ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(UserInfo { id: r.get(0)?, name: r.get(1)?, role: role_of(r.get(2)?), created_ms: r.get(3)?, hosts: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a user and their sessions; the last admin cannot be removed.
    pub fn delete_user(&self, id: i64) -> Result<bool, AccessError> {
        let admins: i64 = self.conn.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| r.get(0))?;
        let role: Option<String> = self.conn.query_row("SELECT role FROM users WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        if role.as_deref() == Some("admin") && admins <= 1 {
            return Err(AccessError::Invalid("the last admin cannot be removed".into()));
        }
        self.conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        Ok(self.conn.execute("DELETE FROM users WHERE id = ?1", [id])? > 0)
    }

    pub fn create_session(&self, user_id: i64, now_ms: i64) -> Result<Session, AccessError> {
        let token = new_secret("")?;
        let csrf = new_secret("")?;
        let expires_ms = now_ms + SESSION_MS;
        self.conn.execute("DELETE FROM sessions WHERE expires_ms < ?1", [now_ms])?;
        self.conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![secret_hash(&token), user_id, csrf, now_ms, expires_ms],
        )?;
        Ok(Session { token, csrf, expires_ms })
    }

    pub fn session(&self, token: &str, now_ms: i64) -> Result<Option<Principal>, AccessError> {
        Ok(self
            .conn
            .query_row(
                "SELECT u.name, u.role, s.csrf, u.hosts FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_ms > ?2",
                params![secret_hash(token), now_ms],
                |r| Ok(Principal { name: r.get(0)?, role: role_of(r.get(1)?), csrf: Some(r.get(2)?), hosts: r.get(3)? }),
            )
            .optional()?)
    }

    pub fn end_session(&self, token: &str) -> Result<(), AccessError> {
        self.conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [secret_hash(token)])?;
        Ok(())
    }

    /// A new API token; the secret is returned once and only its hash is kept.
    pub fn create_token(&self, name: &str, role: Role, created_by: Option<&str>, now_ms: i64) -> Result<(TokenInfo, String), AccessError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(AccessError::Invalid("a token name is 1 to 64 characters".into()));
        }
        let secret = new_secret("lsk_")?;
        self.conn.execute(
            "INSERT INTO api_tokens (name, token_hash, role, created_ms, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, secret_hash(&secret), role.as_str(), now_ms, created_by],
        )?;
        let info = TokenInfo {
            id: self.conn.last_insert_rowid(),
            name: name.to_string(),
            role,
            created_ms: now_ms,
            created_by: created_by.map(str::to_string),
            revoked_ms: None,
            hosts: None,
        };
        Ok((info, secret))
    }

    pub fn token(&self, secret: &str) -> Result<Option<Principal>, AccessError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, role, hosts FROM api_tokens WHERE token_hash = ?1 AND revoked_ms IS NULL",
                [secret_hash(secret)],
                |r| Ok(Principal { name: format!("token:{}", r.get::<_, String>(0)?), role: role_of(r.get(1)?), csrf: None, hosts: r.get(2)? }),
            )
            .optional()?)
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, AccessError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, role, created_ms, created_by, revoked_ms, hosts FROM api_tokens ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenInfo {
                id: r.get(0)?,
                name: r.get(1)?,
                role: role_of(r.get(2)?),
                created_ms: r.get(3)?,
                created_by: r.get(4)?,
                revoked_ms: r.get(5)?,
                hosts: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Limits a user's role to the hosts matching `patterns` (viewer elsewhere); `None`: every host.
    pub fn limit_user_to_hosts(&self, id: i64, patterns: Option<&str>) -> Result<Option<String>, AccessError> {
        let patterns = crate::hosts::normalise(patterns)?;
        self.conn.execute("UPDATE users SET hosts = ?2 WHERE id = ?1", params![id, patterns])?;
        Ok(patterns)
    }

    /// Limits a token's role to the hosts matching `patterns` (viewer elsewhere); `None`: every host.
    pub fn limit_token_to_hosts(&self, id: i64, patterns: Option<&str>) -> Result<Option<String>, AccessError> {
        let patterns = crate::hosts::normalise(patterns)?;
        self.conn.execute("UPDATE api_tokens SET hosts = ?2 WHERE id = ?1", params![id, patterns])?;
        Ok(patterns)
    }

    pub fn revoke_token(&self, id: i64, now_ms: i64) -> Result<bool, AccessError> {
        Ok(self.conn.execute("UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![id, now_ms])? > 0)
    }

    /// `host`: the host the action was done on, when not this server's own.
    pub fn audit(&self, now_ms: i64, actor: &str, action: &str, target: &str, detail: Option<&str>, host: Option<&str>) -> Result<(), AccessError> {
        self.conn.execute(
            "INSERT INTO audit (t_ms, actor, action, target, detail, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now_ms, actor, action, target, detail, host],
        )?;
        Ok(())
    }

    /// Newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, AccessError> {
        let mut stmt = self.conn.prepare("SELECT t_ms, actor, action, target, detail, host FROM audit ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit], |r| {
            Ok(AuditEntry { t_ms: r.get(0)?, actor: r.get(1)?, action: r.get(2)?, target: r.get(3)?, detail: r.get(4)?, host: r.get(5)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, AccessStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = AccessStore::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn passwords_sessions_and_tokens() {
        let (_dir, s) = store();
        assert!(!s.has_admin().unwrap());
        assert!(s.create_user("alice", "short", Role::Admin, 1).is_err());
        assert!(s.create_user("bad name", "long enough pw", Role::Admin, 1).is_err());
        let alice = s.create_user("alice", "correct horse battery", Role::Admin, 1).unwrap();
        assert!(s.has_admin().unwrap());
        assert!(s.create_user("alice", "another password", Role::Viewer, 1).is_err());
        assert!(s.verify_password("alice", "wrong password").unwrap().is_none());
        assert!(s.verify_password("nobody", "correct horse battery").unwrap().is_none());
        assert_eq!(s.verify_password("alice", "correct horse battery").unwrap().unwrap().role, Role::Admin);

        let session = s.create_session(alice.id, 1000).unwrap();
        let p = s.session(&session.token, 2000).unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.role, p.csrf.as_deref()), ("alice", Role::Admin, Some(session.csrf.as_str())));
        assert!(s.session(&session.token, session.expires_ms + 1).unwrap().is_none(), "expired");
        assert!(s.session("not-a-token", 2000).unwrap().is_none());
        s.end_session(&session.token).unwrap();
        assert!(s.session(&session.token, 2000).unwrap().is_none());

        let (info, secret) = s.create_token("ci", Role::Operator, Some("alice"), 5).unwrap();
        assert!(secret.starts_with("lsk_") && secret.len() == 68);
        assert_eq!(s.token(&secret).unwrap().unwrap().role, Role::Operator);
        assert!(s.revoke_token(info.id, 6).unwrap());
        assert!(s.token(&secret).unwrap().is_none());
        assert_eq!(s.tokens().unwrap()[0].revoked_ms, Some(6));
        // Nothing secret is stored in the clear.
        let stored: String = s.conn.query_row("SELECT token_hash FROM api_tokens", [], |r| r.get(0)).unwrap();
        assert_ne!(stored, secret);
    }

    #[test]
    fn the_last_admin_stays() {
        let (_dir, s) = store();
        let admin = s.create_user("root", "a long password", Role::Admin, 1).unwrap();
        let viewer = s.create_user("v", "a long password", Role::Viewer, 1).unwrap();
        assert!(s.delete_user(admin.id).is_err());
        assert!(s.delete_user(viewer.id).unwrap());
        s.audit(1, "root", "deleted user", "v", None, None).unwrap();
        assert_eq!(s.audit_log(10).unwrap()[0].action, "deleted user");
    }
}
