//! Webhooks and what was already said, in the server's SQLite file or a
//! team's PostgreSQL: a restart must neither forget a target nor repeat a notification.

use std::path::Path;

use leakscope_db::sqlx::{self, any::AnyRow, Row};
use leakscope_db::{Db, Migration};
use leakscope_model::alerts::WebhookInfo;

use crate::NotifyError;

/// The notify tables, with their auto-numbered column (for a copy into another database).
pub const TABLES: &[(&str, Option<&str>)] = &[("webhooks", Some("id")), ("alert_state", None)];

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "
CREATE TABLE IF NOT EXISTS webhooks (
    id {id},
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT,
    last_result TEXT,
    last_result_ms BIGINT
);
-- Per container (host/name) and kind of alert: whether its condition holds
-- now (a new notification needs it to end first), when one was last sent,
-- and how many were held back since by the rate limit.
CREATE TABLE IF NOT EXISTS alert_state (
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    active BIGINT NOT NULL,
    last_sent_ms BIGINT,
    held BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, kind)
);
",
}];

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
    db: Db,
}

fn webhook_of(r: &AnyRow) -> Result<Webhook, sqlx::Error> {
    let kind: String = r.try_get(3)?;
    Ok(Webhook { id: r.try_get(0)?, name: r.try_get(1)?, url: r.try_get(2)?, kind: kind.parse().unwrap_or(crate::Shape::Json) })
}

fn info_of(r: &AnyRow) -> Result<WebhookInfo, sqlx::Error> {
    let url: String = r.try_get(2)?;
    Ok(WebhookInfo {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        destination: crate::deliver::destination(&url),
        kind: r.try_get(3)?,
        created_ms: r.try_get(4)?,
        created_by: r.try_get(5)?,
        last_result: r.try_get(6)?,
        last_result_ms: r.try_get(7)?,
    })
}

impl NotifyStore {
    /// The SQLite file at `db`.
    pub fn open(db: &Path) -> Result<Self, NotifyError> {
        Self::on(Db::open_sqlite(db)?)
    }

    pub fn on(db: Db) -> Result<Self, NotifyError> {
        db.migrate("notify", MIGRATIONS)?;
        Ok(NotifyStore { db })
    }

    pub fn add_webhook(&self, name: &str, url: &str, kind: crate::Shape, created_by: Option<&str>, now_ms: i64) -> Result<i64, NotifyError> {
        Ok(self.db.run(async {
            sqlx::query("INSERT INTO webhooks (name, url, kind, created_ms, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                .bind(name)
                .bind(url)
                .bind(kind.as_str())
                .bind(now_ms)
                .bind(created_by)
                .fetch_one(self.db.pool())
                .await?
                .try_get(0)
        })?)
    }

    pub fn remove_webhook(&self, id: i64) -> Result<Option<String>, NotifyError> {
        Ok(self.db.run(async {
            let row = sqlx::query("DELETE FROM webhooks WHERE id = $1 RETURNING name").bind(id).fetch_optional(self.db.pool()).await?;
            row.map(|r| r.try_get(0)).transpose()
        })?)
    }

    pub fn webhooks(&self) -> Result<Vec<Webhook>, NotifyError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT id, name, url, kind FROM webhooks ORDER BY id").fetch_all(self.db.pool()).await?;
            rows.iter().map(webhook_of).collect()
        })?)
    }

    pub fn webhook(&self, id: i64) -> Result<Option<Webhook>, NotifyError> {
        Ok(self.db.run(async {
            let row = sqlx::query("SELECT id, name, url, kind FROM webhooks WHERE id = $1").bind(id).fetch_optional(self.db.pool()).await?;
            row.as_ref().map(webhook_of).transpose()
        })?)
    }

    /// For the admin page and the API: the URL reduced to where it goes.
    pub fn webhook_infos(&self) -> Result<Vec<WebhookInfo>, NotifyError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT id, name, url, kind, created_ms, created_by, last_result, last_result_ms FROM webhooks ORDER BY id")
                .fetch_all(self.db.pool())
                .await?;
            rows.iter().map(info_of).collect()
        })?)
    }

    pub fn record_result(&self, id: i64, result: &str, now_ms: i64) -> Result<(), NotifyError> {
        self.db.run(async {
            sqlx::query("UPDATE webhooks SET last_result = $2, last_result_ms = $3 WHERE id = $1").bind(id).bind(result).bind(now_ms).execute(self.db.pool()).await
        })?;
        Ok(())
    }

    pub fn alert_states(&self) -> Result<Vec<(String, String, AlertState)>, NotifyError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT subject, kind, active, last_sent_ms, held FROM alert_state").fetch_all(self.db.pool()).await?;
            rows.iter()
                .map(|r| {
                    let state = AlertState { active: r.try_get::<i64, _>(2)? != 0, last_sent_ms: r.try_get(3)?, held: r.try_get::<i64, _>(4)? as u32 };
                    Ok((r.try_get(0)?, r.try_get(1)?, state))
                })
                .collect()
        })?)
    }

    pub fn save_state(&self, subject: &str, kind: &str, state: AlertState) -> Result<(), NotifyError> {
        self.db.run(async {
            sqlx::query(
                "INSERT INTO alert_state (subject, kind, active, last_sent_ms, held) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (subject, kind) DO UPDATE SET active = excluded.active, last_sent_ms = excluded.last_sent_ms, held = excluded.held",
            )
            .bind(subject)
            .bind(kind)
            .bind(state.active as i64)
            .bind(state.last_sent_ms)
            .bind(i64::from(state.held))
            .execute(self.db.pool())
            .await
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_and_states_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = dir.path().join("leakscope.db");
        for url in [sqlite.to_str().unwrap().to_string(), leakscope_db::test_postgres_url()] {
            survive_a_reopen(&url);
        }
    }

    fn survive_a_reopen(url: &str) {
        let open = || NotifyStore::on(Db::open(url).unwrap()).unwrap();
        {
            let store = open();
            let id = store.add_webhook("ops", "https://hooks.example/services/T0/B0/secret", crate::Shape::Slack, Some("ann"), 5).unwrap();
            store.record_result(id, "delivered (HTTP 200)", 6).unwrap();
            store.save_state("h/web", "leak", AlertState { active: true, last_sent_ms: Some(7), held: 2 }).unwrap();
        }
        let store = open();
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
