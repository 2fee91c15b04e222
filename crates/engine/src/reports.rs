//! Leak reports: freeze a container's window (series, verdict, events, the
//! chosen dumps' analyses and their diff) into one stored JSON record, so the
//! link shows the same thing after retention has dropped the samples.

use leakscope_db::sqlx::{self, any::AnyRow, Row};
use leakscope_db::{Db, Migration};
use leakscope_model::dumps::DumpInfo;
use leakscope_model::reports::{Report, ReportDump, ReportListItem, ReportRequest, RunReportRequest};
use leakscope_model::MemoryPoint;

use crate::{now_ms, Engine, EngineError};

/// The tables `leakscope migrate` copies, with their auto-numbered column (none).
pub const TABLES: &[(&str, Option<&str>)] = &[("reports", None)];

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    // The table as SQLite files from before versions have it.
    sql: "
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    public_token TEXT UNIQUE,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    title TEXT NOT NULL,
    container_name TEXT NOT NULL,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    payload TEXT NOT NULL
);
",
}];
/// A report's chart needs no more detail than this.
const MAX_POINTS: i64 = 1000;
const TOP_CLASSES: usize = 15;
const DIFF_CLASSES: usize = 25;
const MAX_DUMPS: usize = 10;
const MAX_TITLE: usize = 200;
const MAX_NOTES: usize = 20_000;
/// A run sampled every second for a day, with room to spare.
const MAX_RUN_POINTS: usize = 100_000;
const MAX_RUN_EVENTS: usize = 10_000;

/// Stored reports, in the data folder's SQLite file or the team's PostgreSQL.
pub struct ReportStore {
    db: Db,
}

fn list_item_of(r: &AnyRow) -> Result<ReportListItem, sqlx::Error> {
    Ok(ReportListItem {
        id: r.try_get(0)?,
        slug: r.try_get(1)?,
        title: r.try_get(2)?,
        container_name: r.try_get(3)?,
        created_ms: r.try_get(4)?,
        created_by: r.try_get(5)?,
        from_ms: r.try_get(6)?,
        to_ms: r.try_get(7)?,
        public: r.try_get::<Option<String>, _>(8)?.is_some(),
    })
}

impl ReportStore {
    /// Its tables migrated to this version's schema.
    pub fn on(db: Db) -> Result<Self, EngineError> {
        Self::migrate(&db)?;
        Ok(ReportStore { db })
    }

    pub fn migrate(db: &Db) -> Result<(), EngineError> {
        Ok(db.migrate("reports", MIGRATIONS)?)
    }

    fn insert(&self, report: &Report) -> Result<(), EngineError> {
        let payload = serde_json::to_string(report).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.db.run(async {
            sqlx::query(
                "INSERT INTO reports (id, slug, created_ms, created_by, title, container_name, from_ms, to_ms, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&report.id)
            .bind(&report.slug)
            .bind(report.created_ms)
            .bind(&report.created_by)
            .bind(&report.title)
            .bind(&report.container_name)
            .bind(report.from_ms)
            .bind(report.to_ms)
            .bind(payload)
            .execute(self.db.pool())
            .await
        })?;
        Ok(())
    }

    fn find(&self, column: &'static str, value: &str) -> Result<Option<Report>, EngineError> {
        // `column` is one of our own constants, never input.
        let sql = format!("SELECT payload, public_token FROM reports WHERE {column} = $1");
        let row: Option<(String, Option<String>)> = self.db.run(async {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(self.db.pool()).await?;
            row.map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))).transpose()
        })?;
        row.map(|(payload, token)| {
            let mut report: Report = serde_json::from_str(&payload).map_err(|e| EngineError::Internal(format!("stored report: {e}")))?;
            report.public_token = token;
            Ok(report)
        })
        .transpose()
    }

    fn list(&self) -> Result<Vec<ReportListItem>, EngineError> {
        Ok(self.db.run(async {
            let rows = sqlx::query(
                "SELECT id, slug, title, container_name, created_ms, created_by, from_ms, to_ms, public_token
                 FROM reports ORDER BY created_ms DESC",
            )
            .fetch_all(self.db.pool())
            .await?;
            rows.iter().map(list_item_of).collect::<Result<Vec<_>, _>>()
        })?)
    }

    fn set_public_token(&self, id: &str, token: Option<&str>) -> Result<bool, EngineError> {
        Ok(self.db.run(async {
            sqlx::query("UPDATE reports SET public_token = $2 WHERE id = $1").bind(id).bind(token).execute(self.db.pool()).await
        })?
        .rows_affected()
            > 0)
    }
}

/// Keeps at most [`MAX_POINTS`] points of a run's series: each kept point
/// stands for a bucket of consecutive samples (mean, min and max of the
/// working set), as the store's own rollups do. Returns the bucket width.
fn thin_series(points: Vec<MemoryPoint>) -> (Vec<MemoryPoint>, i64) {
    let span = points.last().map(|p| p.time_ms).unwrap_or(0).saturating_sub(points.first().map(|p| p.time_ms).unwrap_or(0));
    let per_bucket = points.len().div_ceil(MAX_POINTS as usize).max(1);
    let step_ms = (span / (points.len() as i64 - 1).max(1)).max(1).saturating_mul(per_bucket as i64);
    if per_bucket == 1 {
        return (points, step_ms);
    }
    let thinned = points
        .chunks(per_bucket)
        .map(|bucket| {
            // u128: the values come from a request and may be anything.
            let mean = |value: fn(&MemoryPoint) -> u64| (bucket.iter().map(|p| u128::from(value(p))).sum::<u128>() / bucket.len() as u128) as u64;
            MemoryPoint {
                time_ms: bucket[0].time_ms,
                working_set_bytes: mean(|p| p.working_set_bytes),
                working_set_min_bytes: bucket.iter().map(|p| p.working_set_min_bytes).min().unwrap_or(0),
                working_set_max_bytes: bucket.iter().map(|p| p.working_set_max_bytes).max().unwrap_or(0),
                usage_bytes: mean(|p| p.usage_bytes),
                limit_bytes: bucket.iter().rev().find_map(|p| p.limit_bytes),
            }
        })
        .collect();
    (thinned, step_ms)
}

/// A new report's id and the unguessable slug of its link.
fn new_identity() -> Result<(String, String), EngineError> {
    Ok((crate::dumps::new_id()?, crate::dumps::new_id()? + &crate::dumps::new_id()?))
}

fn title_or(requested: &str, default: impl FnOnce() -> String) -> String {
    match requested.trim() {
        "" => default(),
        t => t.chars().take(MAX_TITLE).collect(),
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
        let detail = self.container(&request.container).await?;
        let info = detail.info;
        let interval_ms = self.config().sample_interval.as_millis().max(1) as i64;
        let step_s = (((to_ms - from_ms) / MAX_POINTS).max(interval_ms) + 999) / 1000;
        let series = self.series(&info.name, from_ms, to_ms, Some(step_s as u64)).await?;
        let events = self.events(&info.name, from_ms, to_ms).await?;

        let (dumps, diff) = self.freeze_dumps(&request.dumps).await?;
        let (id, slug) = new_identity()?;
        let report = Report {
            id,
            slug,
            title: title_or(&request.title, || format!("Memory of {}", info.name)),
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
            host: Some(self.host_name()),
        };
        self.store_report(report).await
    }

    /// The chosen dumps as a report keeps them (oldest first) and the diff of
    /// the first to the last when both were analysed.
    async fn freeze_dumps(&self, ids: &[String]) -> Result<(Vec<ReportDump>, Option<leakscope_model::analysis::HeapDiff>), EngineError> {
        if ids.len() > MAX_DUMPS {
            return Err(EngineError::BadRequest(format!("a report holds at most {MAX_DUMPS} dumps")));
        }
        let mut dumps = Vec::new();
        for id in ids {
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
        Ok((dumps, diff))
    }

    /// Freezes a run measured elsewhere (`leakscope check` in CI): its own
    /// series, verdict and events, and dumps already uploaded here.
    pub async fn create_run_report(&self, request: RunReportRequest, created_by: &str) -> Result<Report, EngineError> {
        let from_ms = parse_rfc3339("from", &request.from)?;
        let to_ms = parse_rfc3339("to", &request.to)?;
        if from_ms >= to_ms {
            return Err(EngineError::BadRequest("'from' must be before 'to'".into()));
        }
        let name_ok = |text: &str| !text.trim().is_empty() && text.len() <= MAX_TITLE && !text.chars().any(char::is_control);
        if !name_ok(&request.service) || !name_ok(&request.container_name) || request.image.len() > MAX_TITLE {
            return Err(EngineError::BadRequest(format!(
                "'service' and 'container_name' must be 1 to {MAX_TITLE} characters without control characters, 'image' at most {MAX_TITLE}"
            )));
        }
        if request.series.is_empty() || request.series.len() > MAX_RUN_POINTS {
            return Err(EngineError::BadRequest(format!("'series' must hold 1 to {MAX_RUN_POINTS} points")));
        }
        if request.series.windows(2).any(|w| w[0].time_ms > w[1].time_ms) {
            return Err(EngineError::BadRequest("'series' must be sorted by time_ms, oldest first".into()));
        }
        let slack = 60_000;
        if request.series.iter().any(|p| p.time_ms < from_ms.saturating_sub(slack) || p.time_ms > to_ms.saturating_add(slack)) {
            return Err(EngineError::BadRequest("every point of 'series' must lie between 'from' and 'to'".into()));
        }
        if request.events.len() > MAX_RUN_EVENTS {
            return Err(EngineError::BadRequest(format!("a run report holds at most {MAX_RUN_EVENTS} events")));
        }
        let (dumps, diff) = self.freeze_dumps(&request.dumps).await?;
        let (series, step_ms) = thin_series(request.series);
        let (id, slug) = new_identity()?;
        let report = Report {
            id,
            slug,
            title: title_or(&request.title, || format!("Memory check of {}", request.service.trim())),
            notes: request.notes.chars().take(MAX_NOTES).collect(),
            created_ms: now_ms(),
            created_by: created_by.to_string(),
            container_name: request.container_name.trim().to_string(),
            container_id: String::new(),
            image: request.image,
            service: Some(request.service.trim().to_string()),
            from_ms,
            to_ms,
            step_ms,
            series,
            limit_bytes: request.limit_bytes,
            leak: request.leak,
            events: request.events,
            dumps,
            diff,
            public_token: None,
            host: None,
        };
        self.store_report(report).await
    }

    async fn store_report(&self, report: Report) -> Result<Report, EngineError> {
        let stored = report.clone();
        self.blocking(move |e| e.inner.reports.insert(&stored)).await?;
        Ok(report)
    }

    pub async fn reports(&self) -> Result<Vec<ReportListItem>, EngineError> {
        self.blocking(|e| e.inner.reports.list()).await
    }

    /// By id or by slug.
    pub async fn report(&self, id_or_slug: &str) -> Result<Report, EngineError> {
        let key = id_or_slug.to_string();
        self.blocking(move |e| {
            let store = &e.inner.reports;
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
        self.blocking(move |e| e.inner.reports.find("public_token", &key))
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
        self.blocking(move |e| e.inner.reports.set_public_token(&rid, Some(&t))).await?;
        Ok(token)
    }

    /// Ends public access at once.
    pub async fn unshare_report(&self, id: &str) -> Result<(), EngineError> {
        let report = self.report(id).await?;
        self.blocking(move |e| e.inner.reports.set_public_token(&report.id, None)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(time_ms: i64, bytes: u64) -> MemoryPoint {
        MemoryPoint { time_ms, working_set_bytes: bytes, working_set_min_bytes: bytes, working_set_max_bytes: bytes, usage_bytes: bytes, limit_bytes: Some(1 << 30) }
    }

    #[test]
    fn a_long_run_is_thinned_into_buckets_that_keep_the_extremes() {
        let short: Vec<MemoryPoint> = (0..900).map(|i| point(i * 1000, 100)).collect();
        let (kept, step) = thin_series(short.clone());
        assert_eq!((kept, step), (short, 1000));

        let mut day: Vec<MemoryPoint> = (0..86_400).map(|i| point(i * 1000, 100 + i as u64)).collect();
        day[500].working_set_max_bytes = u64::MAX;
        day[501].working_set_bytes = u64::MAX;
        let (kept, step) = thin_series(day);
        assert!(kept.len() <= MAX_POINTS as usize && kept.len() > 900, "{}", kept.len());
        assert_eq!(step, 87_000);
        assert_eq!(kept[0].working_set_min_bytes, 100);
        assert_eq!(kept[5].working_set_max_bytes, u64::MAX, "a spike inside a bucket stays visible");
        assert!(kept[5].working_set_bytes > 1 << 50, "means do not overflow");
        assert!(kept.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
    }
}
