//! Leak reports: freeze a container's window (series, verdict, events, the
//! chosen dumps' analyses and their diff) into one stored JSON record, so the
//! link shows the same thing after retention has dropped the samples.

use std::path::Path;

use leakscope_model::dumps::DumpInfo;
use leakscope_model::reports::{Report, ReportDump, ReportListItem, ReportRequest};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{lock, now_ms, Engine, EngineError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    public_token TEXT UNIQUE,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    title TEXT NOT NULL,
    container_name TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    payload TEXT NOT NULL
);
";
/// A report's chart needs no more detail than this.
const MAX_POINTS: i64 = 1000;
const TOP_CLASSES: usize = 15;
const DIFF_CLASSES: usize = 25;
const MAX_DUMPS: usize = 10;
const MAX_TITLE: usize = 200;
const MAX_NOTES: usize = 20_000;

pub(crate) struct ReportStore {
    conn: Connection,
}

impl ReportStore {
    pub(crate) fn open(db: &Path) -> Result<Self, EngineError> {
        let conn = Connection::open(db).map_err(|e| EngineError::store(db, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA).map_err(|e| EngineError::store(db, e))?;
        Ok(ReportStore { conn })
    }

    fn insert(&self, report: &Report) -> Result<(), EngineError> {
        let payload = serde_json::to_string(report).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO reports (id, slug, created_ms, created_by, title, container_name, from_ms, to_ms, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                report.id,
                report.slug,
                report.created_ms,
                report.created_by,
                report.title,
                report.container_name,
                report.from_ms,
                report.to_ms,
                payload
            ],
        )?;
        Ok(())
    }

    fn find(&self, column: &str, value: &str) -> Result<Option<Report>, EngineError> {
        // `column` is one of our own constants, never input.
        let sql = format!("SELECT payload, public_token FROM reports WHERE {column} = ?1");
        let row: Option<(String, Option<String>)> =
            self.conn.query_row(&sql, [value], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        row.map(|(payload, token)| {
            let mut report: Report = serde_json::from_str(&payload).map_err(|e| EngineError::Internal(format!("stored report: {e}")))?;
            report.public_token = token;
            Ok(report)
        })
        .transpose()
    }

    fn list(&self) -> Result<Vec<ReportListItem>, EngineError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, slug, title, container_name, created_ms, created_by, from_ms, to_ms, public_token IS NOT NULL
             FROM reports ORDER BY created_ms DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ReportListItem {
                id: r.get(0)?,
                slug: r.get(1)?,
                title: r.get(2)?,
                container_name: r.get(3)?,
                created_ms: r.get(4)?,
                created_by: r.get(5)?,
                from_ms: r.get(6)?,
                to_ms: r.get(7)?,
                public: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_public_token(&self, id: &str, token: Option<&str>) -> Result<bool, EngineError> {
        Ok(self.conn.execute("UPDATE reports SET public_token = ?2 WHERE id = ?1", params![id, token])? > 0)
    }
}

fn parse_rfc3339(field: &str, text: &str) -> Result<i64, EngineError> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| EngineError::BadRequest(format!("'{field}' must be an RFC 3339 time like 2026-11-27T10:00:00Z: {e}")))
}

impl Engine {
    /// Freezes a report and stores it.
    pub async fn create_report(&self, request: ReportRequest, created_by: &str) -> Result<Report, EngineError> {
        let from_ms = parse_rfc3339("from", &request.from)?;
        let to_ms = parse_rfc3339("to", &request.to)?;
        if from_ms >= to_ms {
            return Err(EngineError::BadRequest("'from' must be before 'to'".into()));
        }
        if request.dumps.len() > MAX_DUMPS {
            return Err(EngineError::BadRequest(format!("a report holds at most {MAX_DUMPS} dumps")));
        }
        let detail = self.container(&request.container).await?;
        let info = detail.info;
        let interval_ms = self.config().sample_interval.as_millis().max(1) as i64;
        let step_s = (((to_ms - from_ms) / MAX_POINTS).max(interval_ms) + 999) / 1000;
        let series = self.series(&info.name, from_ms, to_ms, Some(step_s as u64)).await?;
        let events = self.events(&info.name, from_ms, to_ms).await?;

        let mut dumps = Vec::new();
        for id in &request.dumps {
            let dump: DumpInfo = self.dump(id).await?;
            // Analyses still running are frozen as they are (summary missing) rather than waited for.
            let analysis = self.dump_analysis(id).await.ok();
            dumps.push(ReportDump {
                info: dump,
                summary: analysis.as_ref().map(|a| a.summary.clone()),
                suspects: analysis.as_ref().map(|a| a.suspects.clone()).unwrap_or_default(),
                top_classes: analysis
                    .map(|a| {
                        let mut h = a.histogram;
                        h.sort_by(|x, y| y.retained_bytes.cmp(&x.retained_bytes));
                        h.truncate(TOP_CLASSES);
                        h
                    })
                    .unwrap_or_default(),
            });
        }
        dumps.sort_by_key(|d| d.info.created_ms);
        let diff = match (dumps.first(), dumps.last()) {
            (Some(a), Some(b)) if dumps.len() >= 2 && a.summary.is_some() && b.summary.is_some() => {
                let mut diff = self.dump_diff(&a.info.id, &b.info.id).await?;
                diff.classes.truncate(DIFF_CLASSES);
                Some(diff)
            }
            _ => None,
        };
        let title = match request.title.trim() {
            "" => format!("Memory of {}", info.name),
            t => t.chars().take(MAX_TITLE).collect(),
        };
        let report = Report {
            id: crate::dumps::new_id()?,
            slug: crate::dumps::new_id()? + &crate::dumps::new_id()?,
            title,
            notes: request.notes.chars().take(MAX_NOTES).collect(),
            created_ms: now_ms(),
            created_by: created_by.to_string(),
            container_name: info.name.clone(),
            container_id: info.id.clone(),
            image: info.image.clone(),
            service: info.compose_service.clone(),
            from_ms,
            to_ms,
            step_ms: series.step_seconds as i64 * 1000,
            series: series.points,
            limit_bytes: info.limit_bytes,
            leak: self.leak_status(&info.name),
            events,
            dumps,
            diff,
            public_token: None,
        };
        let stored = report.clone();
        self.blocking(move |e| lock(&e.inner.reports).insert(&stored)).await?;
        Ok(report)
    }

    pub async fn reports(&self) -> Result<Vec<ReportListItem>, EngineError> {
        self.blocking(|e| lock(&e.inner.reports).list()).await
    }

    /// By id or by slug.
    pub async fn report(&self, id_or_slug: &str) -> Result<Report, EngineError> {
        let key = id_or_slug.to_string();
        self.blocking(move |e| {
            let store = lock(&e.inner.reports);
            match store.find("id", &key)? {
                Some(r) => Ok(Some(r)),
                None => store.find("slug", &key),
            }
        })
        .await?
        .ok_or_else(|| EngineError::UnknownReport(id_or_slug.to_string()))
    }

    /// A shared report by its public token.
    pub async fn public_report(&self, token: &str) -> Result<Report, EngineError> {
        let key = token.to_string();
        self.blocking(move |e| lock(&e.inner.reports).find("public_token", &key))
            .await?
            .ok_or_else(|| EngineError::UnknownReport("(public link)".into()))
    }

    /// Makes a report public; returns its token (the same one if already shared).
    pub async fn share_report(&self, id: &str) -> Result<String, EngineError> {
        let report = self.report(id).await?;
        if let Some(token) = report.public_token {
            return Ok(token);
        }
        let token = crate::dumps::new_id()? + &crate::dumps::new_id()?;
        let (rid, t) = (report.id.clone(), token.clone());
        self.blocking(move |e| lock(&e.inner.reports).set_public_token(&rid, Some(&t))).await?;
        Ok(token)
    }

    /// Ends public access at once.
    pub async fn unshare_report(&self, id: &str) -> Result<(), EngineError> {
        let report = self.report(id).await?;
        self.blocking(move |e| lock(&e.inner.reports).set_public_token(&report.id, None)).await?;
        Ok(())
    }
}
