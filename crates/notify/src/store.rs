//! Webhooks and what was already said, in the server's SQLite file: a
//! restart must neither forget a target nor repeat a notification.

use std::path::Path;

use leakscope_model::alerts::WebhookInfo;
use rusqlite::{params, Connection, OptionalExtension};

use crate::NotifyError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT,
    last_result TEXT,
    last_result_ms INTEGER
);
-- Per container (host/name) and kind of alert: whether its condition holds
-- now (a new notification needs it to end first), when one was last sent,
-- and how many were held back since by the rate limit.
CREATE TABLE IF NOT EXISTS alert_state (
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    active INTEGER NOT NULL,
    last_sent_ms INTEGER,
    held INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, kind)
);
";

/// One webhook with its secret URL (never leaves the server).
#[derive(Clone, Debug)]
pub struct Webhook {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub kind: crate::Shape,
}

/// What is remembered of one (subject, kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertState {
    pub active: bool,
    pub last_sent_ms: Option<i64>,
    pub held: u32,
}

pub struct NotifyStore {
    conn: Connection,
}

impl NotifyStore {
    pub fn open(db: &Path) -> Result<Self, NotifyError> {
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "cache_size", -256)?;
        conn.execute_batch(SCHEMA)?;
        Ok(NotifyStore { conn })
    }

    pub fn add_webhook(&self, name: &str, url: &str, kind: crate::Shape, created_by: Option<&str>, now_ms: i64) -> Result<i64, NotifyError> {
        self.conn.execute(
            "INSERT INTO webhooks (name, url, kind, created_ms, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, url, kind.as_str(), now_ms, created_by],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn remove_webhook(&self, id: i64) -> Result<Option<String>, NotifyError> {
        let name: Option<String> = self.conn.query_row("SELECT name FROM webhooks WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        self.conn.execute("DELETE FROM webhooks WHERE id = ?1", [id])?;
        Ok(name)
    }

    pub fn webhooks(&self) -> Result<Vec<Webhook>, NotifyError> {
        let mut stmt = self.conn.prepare_cached("SELECT id, name, url, kind FROM webhooks ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(3)?;
            Ok(Webhook { id: r.get(0)?, name: r.get(1)?, url: r.get(2)?, kind: kind.parse().unwrap_or(crate::Shape::Json) })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn webhook(&self, id: i64) -> Result<Option<Webhook>, NotifyError> {
        Ok(self.webhooks()?.into_iter().find(|w| w.id == id))
    }

    /// For the admin page and the API: the URL reduced to where it goes.
    pub fn webhook_infos(&self) -> Result<Vec<WebhookInfo>, NotifyError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, url, kind, created_ms, created_by, last_result, last_result_ms FROM webhooks ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let url: String = r.get(2)?;
            Ok(WebhookInfo {
                id: r.get(0)?,
                name: r.get(1)?,
                destination: crate::deliver::destination(&url),
                kind: r.get(3)?,
                created_ms: r.get(4)?,
                created_by: r.get(5)?,
                last_result: r.get(6)?,
                last_result_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn record_result(&self, id: i64, result: &str, now_ms: i64) -> Result<(), NotifyError> {
        self.conn.execute("UPDATE webhooks SET last_result = ?2, last_result_ms = ?3 WHERE id = ?1", params![id, result, now_ms])?;
        Ok(())
    }

    pub fn alert_states(&self) -> Result<Vec<(String, String, AlertState)>, NotifyError> {
        let mut stmt = self.conn.prepare_cached("SELECT subject, kind, active, last_sent_ms, held FROM alert_state")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, AlertState { active: r.get::<_, i64>(2)? != 0, last_sent_ms: r.get(3)?, held: r.get::<_, i64>(4)? as u32 }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn save_state(&self, subject: &str, kind: &str, state: AlertState) -> Result<(), NotifyError> {
        self.conn.execute(
            "INSERT INTO alert_state (subject, kind, active, last_sent_ms, held) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(subject, kind) DO UPDATE SET active = excluded.active, last_sent_ms = excluded.last_sent_ms, held = excluded.held",
            params![subject, kind, state.active as i64, state.last_sent_ms, state.held as i64],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_and_states_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("leakscope.db");
        {
            let store = NotifyStore::open(&db).unwrap();
            let id = store.add_webhook("ops", "https://hooks.example/services/T0/B0/secret", crate::Shape::Slack, Some("ann"), 5).unwrap();
            store.record_result(id, "delivered (HTTP 200)", 6).unwrap();
            store.save_state("h/web", "leak", AlertState { active: true, last_sent_ms: Some(7), held: 2 }).unwrap();
        }
        let store = NotifyStore::open(&db).unwrap();
        let infos = store.webhook_infos().unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].destination, "https://hooks.example");
        assert_eq!(infos[0].last_result.as_deref(), Some("delivered (HTTP 200)"));
        assert_eq!(store.webhooks().unwrap()[0].url, "https://hooks.example/services/T0/B0/secret");
        assert_eq!(store.alert_states().unwrap(), vec![("h/web".into(), "leak".into(), AlertState { active: true, last_sent_ms: Some(7), held: 2 })]);
        assert_eq!(store.remove_webhook(infos[0].id).unwrap().as_deref(), Some("ops"));
        assert!(store.webhooks().unwrap().is_empty());
    }
}
