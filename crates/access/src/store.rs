//! Accounts, sessions, tokens and the audit log, in the dashboard's SQLite
//! file or a team's PostgreSQL (`--database`), through `leakscope_db`.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use leakscope_db::sqlx::{self, any::AnyRow, Row};
use leakscope_db::{Backend, Db, Migration};
use serde::Serialize;

use crate::{new_secret, secret_hash, AccessError, Role};

/// The access tables in the order a copy must fill them (referenced first), with their auto-numbered column.
pub const TABLES: &[(&str, Option<&str>)] =
    &[("users", Some("id")), ("sessions", None), ("api_tokens", Some("id")), ("audit", Some("id")), ("agent_enrollments", Some("id")), ("agents", Some("id"))];

/// The access tables' schema, step by step (`leakscope_schema`, component `access`).
/// Version 1 is what SQLite files made before versions were kept already hold.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "
CREATE TABLE IF NOT EXISTS users (
    id {id},
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    hosts TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id {id},
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT,
    revoked_ms BIGINT,
    hosts TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id {id},
    t_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT,
    host TEXT
);
CREATE TABLE IF NOT EXISTS agent_enrollments (
    id {id},
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT,
    created_ms BIGINT NOT NULL,
    created_by TEXT,
    expires_ms BIGINT NOT NULL,
    used_by_agent BIGINT
);
CREATE TABLE IF NOT EXISTS agents (
    id {id},
    host_id TEXT NOT NULL,
    name TEXT NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    enrolled_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    last_seen_ms BIGINT
);
",
}];

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
    pub(crate) db: Db,
}

fn role_of(text: String) -> Role {
    // An unknown word in the database grants the least.
    text.parse().unwrap_or(Role::Viewer)
}

fn user_of(r: &AnyRow) -> Result<UserInfo, sqlx::Error> {
    Ok(UserInfo { id: r.try_get(0)?, name: r.try_get(1)?, role: role_of(r.try_get(2)?), created_ms: r.try_get(3)?, hosts: r.try_get(4)? })
}

fn token_of(r: &AnyRow) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        role: role_of(r.try_get(2)?),
        created_ms: r.try_get(3)?,
        created_by: r.try_get(4)?,
        revoked_ms: r.try_get(5)?,
        hosts: r.try_get(6)?,
    })
}

impl AccessStore {
    /// The SQLite file at `db` (the data folder's `leakscope.db`).
    pub fn open(db: &Path) -> Result<Self, AccessError> {
        Self::on(Db::open_sqlite(db)?)
    }

    /// `--database`: a SQLite file or `postgres://…`.
    pub fn open_url(url: &str) -> Result<Self, AccessError> {
        Self::on(Db::open(url)?)
    }

    pub fn on(db: Db) -> Result<Self, AccessError> {
        if db.backend() == Backend::Sqlite && db.schema_version("access")? == 0 {
            upgrade_unversioned_sqlite(&db)?;
        }
        db.migrate("access", MIGRATIONS)?;
        Ok(AccessStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
    pub fn has_admin(&self) -> Result<bool, AccessError> {
        let admins: i64 = self.db.run(async {
            sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetch_one(self.db.pool()).await?.try_get(0)
        })?;
        Ok(admins > 0)
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
        let inserted: Option<i64> = self.db.run(async {
            sqlx::query("INSERT INTO users (name, password_hash, role, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING id")
                .bind(name)
                .bind(hash)
                .bind(role.as_str())
                .bind(now_ms)
                .fetch_optional(self.db.pool())
                .await?
                .map(|r| r.try_get(0))
                .transpose()
        })?;
        let Some(id) = inserted else {
            return Err(AccessError::Invalid(format!("a user named {name} exists already")));
        };
        Ok(UserInfo { id, name: name.to_string(), role, created_ms: now_ms, hosts: None })
    }

    /// The user when the password matches; `None` otherwise (same answer for an unknown name).
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<UserInfo>, AccessError> {
        let row: Option<(UserInfo, String)> = self.db.run(async {
            let row = sqlx::query("SELECT id, name, role, created_ms, hosts, password_hash FROM users WHERE name = $1")
                .bind(name.trim())
                .fetch_optional(self.db.pool())
                .await?;
            row.map(|r| Ok((user_of(&r)?, r.try_get(5)?))).transpose()
        })?;
        let Some((user, stored)) = row else {
            return Ok(None);
        };
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return Ok(None);
        };
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok().then_some(user))
    }

    pub fn users(&self) -> Result<Vec<UserInfo>, AccessError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT id, name, role, created_ms, hosts FROM users ORDER BY name").fetch_all(self.db.pool()).await?;
            rows.iter().map(user_of).collect()
        })?)
    }

    /// Removes a user and their sessions; the last admin cannot be removed.
    pub fn delete_user(&self, id: i64) -> Result<bool, AccessError> {
        let outcome: Result<bool, String> = self.db.run(async {
            let mut tx = self.db.begin_write().await?;
            let admins: i64 = sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetch_one(&mut *tx).await?.try_get(0)?;
            let role: Option<String> =
                sqlx::query("SELECT role FROM users WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?.map(|r| r.try_get(0)).transpose()?;
            if role.as_deref() == Some("admin") && admins <= 1 {
                return Ok(Err("the last admin cannot be removed".to_string()));
            }
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
            let deleted = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected() > 0;
            tx.commit().await?;
            Ok(Ok(deleted))
        })?;
        outcome.map_err(AccessError::Invalid)
    }

    pub fn create_session(&self, user_id: i64, now_ms: i64) -> Result<Session, AccessError> {
        let token = new_secret("")?;
        let csrf = new_secret("")?;
        let expires_ms = now_ms + SESSION_MS;
        self.db.run(async {
            sqlx::query("DELETE FROM sessions WHERE expires_ms < $1").bind(now_ms).execute(self.db.pool()).await?;
            sqlx::query("INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(secret_hash(&token))
                .bind(user_id)
                .bind(&csrf)
                .bind(now_ms)
                .bind(expires_ms)
                .execute(self.db.pool())
                .await
        })?;
        Ok(Session { token, csrf, expires_ms })
    }

    pub fn session(&self, token: &str, now_ms: i64) -> Result<Option<Principal>, AccessError> {
        Ok(self.db.run(async {
            let row = sqlx::query(
                "SELECT u.name, u.role, s.csrf, u.hosts FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = $1 AND s.expires_ms > $2",
            )
            .bind(secret_hash(token))
            .bind(now_ms)
            .fetch_optional(self.db.pool())
            .await?;
            row.map(|r| Ok(Principal { name: r.try_get(0)?, role: role_of(r.try_get(1)?), csrf: Some(r.try_get(2)?), hosts: r.try_get(3)? })).transpose()
        })?)
    }

    pub fn end_session(&self, token: &str) -> Result<(), AccessError> {
        self.db.run(async { sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(secret_hash(token)).execute(self.db.pool()).await })?;
        Ok(())
    }

    /// A new API token; the secret is returned once and only its hash is kept.
    pub fn create_token(&self, name: &str, role: Role, created_by: Option<&str>, now_ms: i64) -> Result<(TokenInfo, String), AccessError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(AccessError::Invalid("a token name is 1 to 64 characters".into()));
        }
        let secret = new_secret("lsk_")?;
        let id: i64 = self.db.run(async {
            sqlx::query("INSERT INTO api_tokens (name, token_hash, role, created_ms, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                .bind(name)
                .bind(secret_hash(&secret))
                .bind(role.as_str())
                .bind(now_ms)
                .bind(created_by)
                .fetch_one(self.db.pool())
                .await?
                .try_get(0)
        })?;
        let info = TokenInfo { id, name: name.to_string(), role, created_ms: now_ms, created_by: created_by.map(str::to_string), revoked_ms: None, hosts: None };
        Ok((info, secret))
    }

    pub fn token(&self, secret: &str) -> Result<Option<Principal>, AccessError> {
        Ok(self.db.run(async {
            let row = sqlx::query("SELECT name, role, hosts FROM api_tokens WHERE token_hash = $1 AND revoked_ms IS NULL")
                .bind(secret_hash(secret))
                .fetch_optional(self.db.pool())
                .await?;
            row.map(|r| {
                Ok(Principal { name: format!("token:{}", r.try_get::<String, _>(0)?), role: role_of(r.try_get(1)?), csrf: None, hosts: r.try_get(2)? })
            })
            .transpose()
        })?)
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, AccessError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT id, name, role, created_ms, created_by, revoked_ms, hosts FROM api_tokens ORDER BY id")
                .fetch_all(self.db.pool())
                .await?;
            rows.iter().map(token_of).collect()
        })?)
    }

    /// Limits a user's role to the hosts matching `patterns` (viewer elsewhere); `None`: every host.
    pub fn limit_user_to_hosts(&self, id: i64, patterns: Option<&str>) -> Result<Option<String>, AccessError> {
        let patterns = crate::hosts::normalise(patterns)?;
        self.db.run(async { sqlx::query("UPDATE users SET hosts = $2 WHERE id = $1").bind(id).bind(patterns.clone()).execute(self.db.pool()).await })?;
        Ok(patterns)
    }

    /// Limits a token's role to the hosts matching `patterns` (viewer elsewhere); `None`: every host.
    pub fn limit_token_to_hosts(&self, id: i64, patterns: Option<&str>) -> Result<Option<String>, AccessError> {
        let patterns = crate::hosts::normalise(patterns)?;
        self.db.run(async { sqlx::query("UPDATE api_tokens SET hosts = $2 WHERE id = $1").bind(id).bind(patterns.clone()).execute(self.db.pool()).await })?;
        Ok(patterns)
    }

    pub fn revoke_token(&self, id: i64, now_ms: i64) -> Result<bool, AccessError> {
        let done = self.db.run(async {
            sqlx::query("UPDATE api_tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL").bind(id).bind(now_ms).execute(self.db.pool()).await
        })?;
        Ok(done.rows_affected() > 0)
    }

    /// `host`: the host the action was done on, when not this server's own.
    pub fn audit(&self, now_ms: i64, actor: &str, action: &str, target: &str, detail: Option<&str>, host: Option<&str>) -> Result<(), AccessError> {
        self.db.run(async {
            sqlx::query("INSERT INTO audit (t_ms, actor, action, target, detail, host) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(now_ms)
                .bind(actor)
                .bind(action)
                .bind(target)
                .bind(detail)
                .bind(host)
                .execute(self.db.pool())
                .await
        })?;
        Ok(())
    }

    /// Newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, AccessError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT t_ms, actor, action, target, detail, host FROM audit ORDER BY id DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(self.db.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry { t_ms: r.try_get(0)?, actor: r.try_get(1)?, action: r.try_get(2)?, target: r.try_get(3)?, detail: r.try_get(4)?, host: r.try_get(5)? })
                })
                .collect()
        })?)
    }
}

/// A SQLite file from before schema versions were kept may lack columns added
/// later (roles limited to hosts, the audited host): add them before version 1
/// is recorded, so it ends up as a new file would.
fn upgrade_unversioned_sqlite(db: &Db) -> Result<(), AccessError> {
    for (table, column) in [("users", "hosts"), ("api_tokens", "hosts"), ("audit", "host")] {
        db.run(async {
            let exists: i64 =
                sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1").bind(table).fetch_one(db.pool()).await?.try_get(0)?;
            let has: i64 = sqlx::query("SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2")
                .bind(table)
                .bind(column)
                .fetch_one(db.pool())
                .await?
                .try_get(0)?;
            if exists > 0 && has == 0 {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))).execute(db.pool()).await?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The same store on a SQLite file and on PostgreSQL (every test runs on both).
    pub(crate) fn stores() -> Vec<(tempfile::TempDir, AccessStore)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = AccessStore::open(&dir.path().join("db")).unwrap();
        let postgres = AccessStore::open_url(&leakscope_db::test_postgres_url()).unwrap();
        vec![(dir, sqlite), (tempfile::tempdir().unwrap(), postgres)]
    }

    #[test]
    fn passwords_sessions_and_tokens() {
        for (_dir, s) in stores() {
            passwords_sessions_and_tokens_on(s);
        }
    }

    fn passwords_sessions_and_tokens_on(s: AccessStore) {
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
        let stored: String =
            s.db.run(async { sqlx::query("SELECT token_hash FROM api_tokens").fetch_one(s.db.pool()).await?.try_get(0) }).unwrap();
        assert_ne!(stored, secret);
    }

    #[test]
    fn the_last_admin_stays() {
        for (_dir, s) in stores() {
            the_last_admin_stays_on(s);
        }
    }

    #[test]
    fn a_file_from_before_schema_versions_gains_the_later_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leakscope.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_ms INTEGER NOT NULL);
             CREATE TABLE api_tokens (id INTEGER PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, created_ms INTEGER NOT NULL, created_by TEXT, revoked_ms INTEGER);
             CREATE TABLE audit (id INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT);
             INSERT INTO audit (t_ms, actor, action, target) VALUES (1, 'ann', 'created user', 'bob');",
        )
        .unwrap();
        drop(old);
        let s = AccessStore::open(&path).unwrap();
        assert_eq!(s.db().schema_version("access").unwrap(), 1);
        let user = s.create_user("bob", "a long password", Role::Operator, 2).unwrap();
        assert_eq!(s.limit_user_to_hosts(user.id, Some("db-*")).unwrap().as_deref(), Some("db-*"));
        s.audit(3, "ann", "limited user", "bob", None, Some("db-1")).unwrap();
        let log = s.audit_log(10).unwrap();
        assert_eq!((log[0].host.as_deref(), log[1].action.as_str()), (Some("db-1"), "created user"));
    }

    fn the_last_admin_stays_on(s: AccessStore) {
        let admin = s.create_user("root", "a long password", Role::Admin, 1).unwrap();
        let viewer = s.create_user("v", "a long password", Role::Viewer, 1).unwrap();
        assert!(s.delete_user(admin.id).is_err());
        assert!(s.delete_user(viewer.id).unwrap());
        s.audit(1, "root", "deleted user", "v", None, None).unwrap();
        assert_eq!(s.audit_log(10).unwrap()[0].action, "deleted user");
    }
}
