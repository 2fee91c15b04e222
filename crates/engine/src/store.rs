//! Containers seen, raw samples (kept 48 h by default), 1-minute rollups (kept
//! 90 days) and container events, in the server's database: the SQLite file
//! of its data folder (WAL: a `kill -9` loses at most the tick being written,
//! never a committed one) or the PostgreSQL several servers share. One set
//! of statements for both (`leakscope_db`); only the holder of the background
//! lease writes samples and prunes, so a tick is written once.

use leakscope_db::sqlx::{self, Row};
use leakscope_db::{Db, DbError, Migration};
use leakscope_model::ContainerEvent;
use leakscope_model::MemoryPoint;

use crate::memory::MemoryReading;

/// `IF NOT EXISTS`: data folders from before the migrations have these tables already,
/// with the same columns. Samples and rollups are keyed by (container, time) and
/// stored in that order (`{clustered}`: a table without SQLite's row ids).
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "
CREATE TABLE IF NOT EXISTS containers (
    key {id},
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    image TEXT NOT NULL,
    compose_project TEXT,
    compose_service TEXT,
    state TEXT NOT NULL,
    limit_bytes BIGINT,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    removed BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS containers_by_name ON containers(name, last_seen_ms);
CREATE TABLE IF NOT EXISTS samples (
    ckey BIGINT NOT NULL,
    t BIGINT NOT NULL,
    ws BIGINT NOT NULL,
    usage BIGINT NOT NULL,
    rss BIGINT NOT NULL,
    cache BIGINT NOT NULL,
    lim BIGINT,
    PRIMARY KEY (ckey, t)
){clustered};
CREATE TABLE IF NOT EXISTS rollup_1m (
    ckey BIGINT NOT NULL,
    minute_ms BIGINT NOT NULL,
    n BIGINT NOT NULL,
    ws_min BIGINT NOT NULL,
    ws_avg BIGINT NOT NULL,
    ws_max BIGINT NOT NULL,
    usage_avg BIGINT NOT NULL,
    lim BIGINT,
    PRIMARY KEY (ckey, minute_ms)
){clustered};
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
-- Container lifecycle events, kept ourselves (the engine remembers only its last 256).
CREATE TABLE IF NOT EXISTS events (
    container_id TEXT NOT NULL,
    name TEXT NOT NULL,
    t_ms BIGINT NOT NULL,
    action TEXT NOT NULL,
    exit_code BIGINT,
    PRIMARY KEY (container_id, t_ms, action)
);
CREATE INDEX IF NOT EXISTS events_by_name ON events(name, t_ms);
-- The dashboard's OOM counts, and pruning and replay by time (see `HOT_QUERIES`).
CREATE INDEX IF NOT EXISTS events_by_action ON events(action, name);
CREATE INDEX IF NOT EXISTS events_by_time ON events(t_ms);
",
}, Migration {
    version: 2,
    // Hourly rollups, so that charts of months and a year read a row per hour, and
    // history can be kept for years without keeping every minute (a year of 5 000
    // containers is 2.6 G minute rows, 44 M hourly ones). The first tick after this
    // rolls up every hour of the minutes already kept (`roll_up_hours`).
    sql: "
CREATE TABLE IF NOT EXISTS rollup_1h (
    ckey BIGINT NOT NULL,
    hour_ms BIGINT NOT NULL,
    n BIGINT NOT NULL,
    ws_min BIGINT NOT NULL,
    ws_avg BIGINT NOT NULL,
    ws_max BIGINT NOT NULL,
    usage_avg BIGINT NOT NULL,
    lim BIGINT,
    PRIMARY KEY (ckey, hour_ms)
){clustered};
",
}];

/// The tables `leakscope migrate` copies, with their auto-numbered column.
pub const TABLES: &[(&str, Option<&str>)] =
    &[("containers", Some("key")), ("samples", None), ("rollup_1m", None), ("rollup_1h", None), ("meta", None), ("events", None)];

/// Statements that run every tick, every page view or over every row, kept
/// here so the test can check each one's plan: none may scan `samples`,
/// `rollup_1m`, `rollup_1h` or `events` whole (those grow with containers × time; only
/// `containers`, one row per container ever seen, may be read whole).
/// Samples are keyed by (container, time), so every range on time goes
/// through the container keys.
const ROLLUP_MINUTES: &str = "INSERT INTO rollup_1m (ckey, minute_ms, n, ws_min, ws_avg, ws_max, usage_avg, lim)
     SELECT ckey, (t / 60000) * 60000, count(*), min(ws), CAST(avg(ws) AS BIGINT), max(ws),
            CAST(avg(usage) AS BIGINT), max(lim)
     FROM samples WHERE ckey IN (SELECT key FROM containers) AND t >= $1 AND t < $2 GROUP BY ckey, (t / 60000) * 60000
     ON CONFLICT (ckey, minute_ms) DO UPDATE SET n = excluded.n, ws_min = excluded.ws_min, ws_avg = excluded.ws_avg,
        ws_max = excluded.ws_max, usage_avg = excluded.usage_avg, lim = excluded.lim";
const ROLLUP_HOURS: &str = "INSERT INTO rollup_1h (ckey, hour_ms, n, ws_min, ws_avg, ws_max, usage_avg, lim)
     SELECT ckey, (minute_ms / 3600000) * 3600000, sum(n), min(ws_min), CAST(sum(ws_avg * n) / sum(n) AS BIGINT), max(ws_max),
            CAST(sum(usage_avg * n) / sum(n) AS BIGINT), max(lim)
     FROM rollup_1m WHERE ckey IN (SELECT key FROM containers) AND minute_ms >= $1 AND minute_ms < $2
     GROUP BY ckey, (minute_ms / 3600000) * 3600000
     ON CONFLICT (ckey, hour_ms) DO UPDATE SET n = excluded.n, ws_min = excluded.ws_min, ws_avg = excluded.ws_avg,
        ws_max = excluded.ws_max, usage_avg = excluded.usage_avg, lim = excluded.lim";
const SERIES_RAW: &str = "SELECT (t / $4) * $4 AS b, CAST(avg(ws) AS BIGINT), min(ws), max(ws), CAST(avg(usage) AS BIGINT), max(lim)
     FROM samples WHERE ckey IN (SELECT key FROM containers WHERE name = $1) AND t >= $2 AND t < $3
     GROUP BY b ORDER BY b";
const SERIES_ROLLUP: &str = "SELECT (minute_ms / $4) * $4 AS b, CAST(sum(ws_avg * n) / sum(n) AS BIGINT), min(ws_min), max(ws_max),
            CAST(sum(usage_avg * n) / sum(n) AS BIGINT), max(lim)
     FROM rollup_1m WHERE ckey IN (SELECT key FROM containers WHERE name = $1) AND minute_ms >= $2 AND minute_ms < $3
     GROUP BY b ORDER BY b";
const SERIES_HOURLY: &str = "SELECT (hour_ms / $4) * $4 AS b, CAST(sum(ws_avg * n) / sum(n) AS BIGINT), min(ws_min), max(ws_max),
            CAST(sum(usage_avg * n) / sum(n) AS BIGINT), max(lim)
     FROM rollup_1h WHERE ckey IN (SELECT key FROM containers WHERE name = $1) AND hour_ms >= $2 AND hour_ms < $3
     GROUP BY b ORDER BY b";
const LAST_SAMPLE: &str = "SELECT max(t) FROM samples WHERE ckey = $1";
const RECENT_MINUTES: &str =
    "SELECT (t / 60000) * 60000 AS m, CAST(avg(ws) AS BIGINT) FROM samples WHERE ckey = $1 AND t >= $2 GROUP BY m ORDER BY m";
const EVENTS_OF_NAME: &str =
    "SELECT t_ms, action, exit_code, container_id FROM events WHERE name = $1 AND t_ms >= $2 AND t_ms < $3 ORDER BY t_ms";
const OOM_KILLS: &str = "SELECT name, COUNT(*) FROM events WHERE action = 'oom' GROUP BY name";
const LATEST_EVENT: &str = "SELECT MAX(t_ms) FROM events";
/// A batch of container keys, in key order, for pruning.
const KEYS_AFTER: &str = "SELECT key FROM containers WHERE key > $1 ORDER BY key LIMIT $2";
const PRUNE_SAMPLES: &str = "DELETE FROM samples WHERE ckey = $1 AND t < $2";
const PRUNE_ROLLUPS: &str = "DELETE FROM rollup_1m WHERE ckey = $1 AND minute_ms < $2";
const PRUNE_HOURS: &str = "DELETE FROM rollup_1h WHERE ckey = $1 AND hour_ms < $2";
const PRUNE_EVENTS: &str = "DELETE FROM events WHERE t_ms < $1";

/// Containers whose old rows one pruning step removes, in one transaction:
/// the writer is held for one batch at a time, so sampling ticks go on
/// between batches however much there is to remove.
pub const PRUNE_BATCH: i64 = 200;

/// Everything the store keeps about a container besides its samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub image: String,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub state: String,
    pub limit_bytes: Option<u64>,
    /// The `io.leakscope.capture` label (automatic dumps), from the engine; not stored.
    pub capture_label: Option<String>,
}

/// One sample ready to be written.
#[derive(Clone, Copy, Debug)]
pub struct SampleRow {
    pub container_key: i64,
    pub time_ms: i64,
    pub reading: MemoryReading,
    pub limit_bytes: Option<u64>,
}

/// Which table a series was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesSource {
    Raw,
    Rollup1m,
    Rollup1h,
}

impl SeriesSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesSource::Raw => "raw",
            SeriesSource::Rollup1m => "rollup_1m",
            SeriesSource::Rollup1h => "rollup_1h",
        }
    }
}

/// How long each resolution is kept, in milliseconds. Events are kept as long as
/// the longest, so a chart of any range shows its restarts and OOM kills.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub raw_ms: i64,
    pub minutes_ms: i64,
    pub hours_ms: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Db,
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Samples per INSERT statement (7 values each: under SQLite's and PostgreSQL's bound-value limits).
const ROWS_PER_INSERT: usize = 1000;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Every statement here may run from a blocking thread only (`Db::run`); the engine calls them through `spawn_blocking`.
impl Store {
    /// The store in `db`, its tables made or brought up to date.
    pub fn on(db: &Db) -> Result<Self, DbError> {
        db.migrate("samples", MIGRATIONS)?;
        Ok(Store { db: db.clone() })
    }

    /// The store in a data folder's SQLite file (tools and tests that write history directly).
    pub fn open(url_or_path: &str) -> Result<Self, DbError> {
        Self::on(&Db::open(url_or_path)?)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records a container (new or changed) and returns its key.
    pub fn upsert_container(&self, c: &ContainerRecord, now_ms: i64) -> Result<i64, DbError> {
        self.db.run(async {
            sqlx::query(
                "INSERT INTO containers (id, name, image, compose_project, compose_service, state, limit_bytes, first_seen_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, image = excluded.image,
                    compose_project = excluded.compose_project, compose_service = excluded.compose_service,
                    state = excluded.state, limit_bytes = excluded.limit_bytes, last_seen_ms = excluded.last_seen_ms, removed = 0
                 RETURNING key",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.image)
            .bind(&c.compose_project)
            .bind(&c.compose_service)
            .bind(&c.state)
            .bind(c.limit_bytes.map(to_i64))
            .bind(now_ms)
            .fetch_one(self.db.pool())
            .await?
            .try_get(0)
        })
    }

    /// Records an event once. True when the event is new (a replay after a reconnect is not).
    pub fn insert_event(&self, event: &ContainerEvent, container_id: &str, name: &str) -> Result<bool, DbError> {
        let inserted = self.db.run(async {
            sqlx::query(
                "INSERT INTO events (container_id, name, t_ms, action, exit_code) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (container_id, t_ms, action) DO NOTHING",
            )
            .bind(container_id)
            .bind(name)
            .bind(event.time_ms)
            .bind(&event.action)
            .bind(event.exit_code)
            .execute(self.db.pool())
            .await
        })?;
        Ok(inserted.rows_affected() > 0)
    }

    /// OOM kills the engine reported, per container name, over the kept events.
    pub fn oom_kills_by_name(&self) -> Result<std::collections::HashMap<String, u64>, DbError> {
        let rows = self.db.run(sqlx::query(OOM_KILLS).fetch_all(self.db.pool()))?;
        Ok(rows.iter().filter_map(|row| Some((row.try_get::<String, _>(0).ok()?, to_u64(row.try_get::<i64, _>(1).ok()?)))).collect())
    }

    /// When the last stored event happened (to replay what came after it).
    pub fn latest_event_ms(&self) -> Result<Option<i64>, DbError> {
        self.db.run(async { sqlx::query(LATEST_EVENT).fetch_one(self.db.pool()).await?.try_get(0) })
    }

    /// Events of every container that had this name, oldest first, with plain-words labels.
    pub fn events(&self, name: &str, from_ms: i64, to_ms: i64) -> Result<Vec<ContainerEvent>, DbError> {
        let rows = self.db.run(sqlx::query(EVENTS_OF_NAME).bind(name).bind(from_ms).bind(to_ms).fetch_all(self.db.pool()))?;
        let raw: Vec<(i64, String, Option<i64>, String)> = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(raw
            .iter()
            .map(|(t, action, code, id)| {
                // An exit code of 137 is a SIGKILL; only the engine's own oom event proves an OOM kill.
                let oom_before = raw.iter().any(|(t2, a2, _, id2)| a2 == "oom" && id2 == id && (t - t2).abs() <= 10_000);
                ContainerEvent { time_ms: *t, action: action.clone(), exit_code: *code, label: event_label(action, *code, oom_before) }
            })
            .collect())
    }

    pub fn mark_removed(&self, id: &str) -> Result<(), DbError> {
        self.db.run(sqlx::query("UPDATE containers SET removed = 1, state = 'removed' WHERE id = $1").bind(id).execute(self.db.pool()))?;
        Ok(())
    }

    /// The most recently seen container with this id, id prefix (12+ chars) or name.
    pub fn find_container(&self, id_or_name: &str) -> Result<Option<(i64, ContainerRecord)>, DbError> {
        let name = id_or_name.trim_start_matches('/');
        let prefix = if id_or_name.len() >= 12 && id_or_name.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!("{id_or_name}%")
        } else {
            // A value that no id can match.
            String::from("\u{1}")
        };
        let row = self.db.run(
            sqlx::query(
                "SELECT key, id, name, image, compose_project, compose_service, state, limit_bytes
                 FROM containers WHERE id = $1 OR id LIKE $2 OR name = $3
                 ORDER BY last_seen_ms DESC LIMIT 1",
            )
            .bind(id_or_name)
            .bind(prefix)
            .bind(name)
            .fetch_optional(self.db.pool()),
        )?;
        let Some(row) = row else { return Ok(None) };
        let found = (|| {
            Ok::<_, sqlx::Error>((
                row.try_get(0)?,
                ContainerRecord {
                    id: row.try_get(1)?,
                    name: row.try_get(2)?,
                    image: row.try_get(3)?,
                    compose_project: row.try_get(4)?,
                    compose_service: row.try_get(5)?,
                    state: row.try_get(6)?,
                    limit_bytes: row.try_get::<Option<i64>, _>(7)?.map(to_u64),
                    capture_label: None,
                },
            ))
        })()?;
        Ok(Some(found))
    }

    /// Writes one tick's samples and rolls up every minute completed since the
    /// last roll-up, all in one transaction (on SQLite it holds the write lock
    /// from its start: see `Db::begin_write`).
    pub fn write_tick(&self, rows: &[SampleRow], now_ms: i64) -> Result<(), DbError> {
        // One row per (container, time) in one statement: PostgreSQL refuses to update a row twice in one.
        let mut rows: Vec<&SampleRow> = rows.iter().collect();
        rows.sort_by_key(|r| (r.container_key, r.time_ms));
        rows.dedup_by_key(|r| (r.container_key, r.time_ms));
        self.db.run(async {
            let mut tx = self.db.begin_write().await?;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let b = i * 7;
                        format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7)
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO samples (ckey, t, ws, usage, rss, cache, lim) VALUES {}
                     ON CONFLICT (ckey, t) DO UPDATE SET ws = excluded.ws, usage = excluded.usage, rss = excluded.rss,
                        cache = excluded.cache, lim = excluded.lim",
                    values.join(", ")
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for row in chunk {
                    let r = row.reading;
                    insert = insert
                        .bind(row.container_key)
                        .bind(row.time_ms)
                        .bind(to_i64(r.working_set))
                        .bind(to_i64(r.usage))
                        .bind(to_i64(r.rss))
                        .bind(to_i64(r.cache))
                        .bind(row.limit_bytes.map(to_i64));
                }
                insert.execute(&mut *tx).await?;
            }
            let watermark: Option<i64> = sqlx::query("SELECT value FROM meta WHERE key = 'rollup_watermark_ms'")
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            let current_minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
            let start = match watermark {
                Some(w) => w,
                None => sqlx::query("SELECT min(t) FROM samples")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get::<Option<i64>, _>(0)?
                    .map(|t| t.div_euclid(MINUTE_MS) * MINUTE_MS)
                    .unwrap_or(current_minute),
            };
            if start < current_minute {
                sqlx::query(ROLLUP_MINUTES).bind(start).bind(current_minute).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ('rollup_watermark_ms', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(current_minute)
                .execute(&mut *tx)
                .await?;
            }
            Self::roll_up_hours(&mut tx, now_ms).await?;
            tx.commit().await
        })
    }

    /// Rolls every hour completed since the last time up from its minutes (the
    /// minutes are rolled up first, in the same transaction).
    async fn roll_up_hours(tx: &mut sqlx::Transaction<'static, sqlx::Any>, now_ms: i64) -> Result<(), sqlx::Error> {
        let current_hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let watermark: Option<i64> = sqlx::query("SELECT value FROM meta WHERE key = 'rollup_1h_watermark_ms'")
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let start = match watermark {
            Some(w) => w,
            // First time (a new store, or one from before the hourly table): from the first minute kept.
            None => sqlx::query("SELECT min(minute_ms) FROM rollup_1m")
                .fetch_one(&mut **tx)
                .await?
                .try_get::<Option<i64>, _>(0)?
                .map(|m| m.div_euclid(HOUR_MS) * HOUR_MS)
                .unwrap_or(current_hour),
        };
        if start < current_hour {
            sqlx::query(ROLLUP_HOURS).bind(start).bind(current_hour).execute(&mut **tx).await?;
        }
        // Written the first time too, so the search for a start (which reads a whole table) runs once.
        if start < current_hour || watermark.is_none() {
            sqlx::query("INSERT INTO meta (key, value) VALUES ('rollup_1h_watermark_ms', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(start.max(current_hour))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Drops samples and rollups older than their retention for the next
    /// `PRUNE_BATCH` containers after key `after` (start with 0), and events
    /// older than the longest retention with the first batch. Returns the rows
    /// removed and the key to continue after, `None` when every container was done.
    pub fn prune_step(&self, now_ms: i64, keep: Retention, after: i64) -> Result<(usize, Option<i64>), DbError> {
        self.db.run(async {
            let mut tx = self.db.begin_write().await?;
            let keys: Vec<i64> = sqlx::query(KEYS_AFTER)
                .bind(after)
                .bind(PRUNE_BATCH)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            let mut removed = 0u64;
            if after == 0 {
                let events_keep = keep.raw_ms.max(keep.minutes_ms).max(keep.hours_ms);
                removed += sqlx::query(PRUNE_EVENTS).bind(now_ms - events_keep).execute(&mut *tx).await?.rows_affected();
            }
            for &key in &keys {
                removed += sqlx::query(PRUNE_SAMPLES).bind(key).bind(now_ms - keep.raw_ms).execute(&mut *tx).await?.rows_affected();
                removed += sqlx::query(PRUNE_ROLLUPS).bind(key).bind(now_ms - keep.minutes_ms).execute(&mut *tx).await?.rows_affected();
                removed += sqlx::query(PRUNE_HOURS).bind(key).bind(now_ms - keep.hours_ms).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            let next = (keys.len() as i64 == PRUNE_BATCH).then(|| keys[keys.len() - 1]);
            Ok((removed as usize, next))
        })
    }

    /// Every pruning step at once (tests and tools; the sampler steps itself).
    pub fn prune(&self, now_ms: i64, keep: Retention) -> Result<usize, DbError> {
        let (mut removed, mut next) = self.prune_step(now_ms, keep, 0)?;
        while let Some(after) = next {
            let (n, more) = self.prune_step(now_ms, keep, after)?;
            removed += n;
            next = more;
        }
        Ok(removed)
    }

    /// Memory of every container that ever had this name (history survives
    /// re-creation), in buckets of `step_ms`.
    pub fn series(&self, name: &str, from_ms: i64, to_ms: i64, step_ms: i64, source: SeriesSource) -> Result<Vec<MemoryPoint>, DbError> {
        let step_ms = step_ms.max(1);
        let sql = match source {
            SeriesSource::Raw => SERIES_RAW,
            SeriesSource::Rollup1m => SERIES_ROLLUP,
            SeriesSource::Rollup1h => SERIES_HOURLY,
        };
        let rows = self.db.run(sqlx::query(sql).bind(name).bind(from_ms).bind(to_ms).bind(step_ms).fetch_all(self.db.pool()))?;
        let points = rows
            .iter()
            .map(|row| {
                Ok(MemoryPoint {
                    time_ms: row.try_get(0)?,
                    working_set_bytes: to_u64(row.try_get(1)?),
                    working_set_min_bytes: to_u64(row.try_get(2)?),
                    working_set_max_bytes: to_u64(row.try_get(3)?),
                    usage_bytes: to_u64(row.try_get(4)?),
                    limit_bytes: row.try_get::<Option<i64>, _>(5)?.map(to_u64),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(points)
    }

    /// The time of each container's last stored sample (those with none are left out).
    pub fn last_sample_times(&self, keys: &[i64]) -> Result<std::collections::HashMap<i64, i64>, DbError> {
        self.db.run(async {
            let mut found = std::collections::HashMap::new();
            for &key in keys {
                let last: Option<i64> = sqlx::query(LAST_SAMPLE).bind(key).fetch_one(self.db.pool()).await?.try_get(0)?;
                if let Some(t) = last {
                    found.insert(key, t);
                }
            }
            Ok(found)
        })
    }

    /// Per-minute working set of one container since `since_ms` (seeds sparklines after a restart).
    pub fn recent_minutes(&self, key: i64, since_ms: i64) -> Result<Vec<(i64, u64)>, DbError> {
        let rows = self.db.run(sqlx::query(RECENT_MINUTES).bind(key).bind(since_ms).fetch_all(self.db.pool()))?;
        let minutes = rows.iter().map(|row| Ok((row.try_get(0)?, to_u64(row.try_get(1)?)))).collect::<Result<_, sqlx::Error>>()?;
        Ok(minutes)
    }
}

/// `OOM killed (137)`, `killed (137)`, `exited (0)`, `started`, …
pub fn event_label(action: &str, exit_code: Option<i64>, oom_confirmed: bool) -> String {
    match (action, exit_code) {
        ("oom", _) => "out of memory".into(),
        ("die", Some(code)) if oom_confirmed => format!("OOM killed ({code})"),
        ("die", Some(137)) => "killed (137)".into(),
        ("die", Some(code)) => format!("exited ({code})"),
        ("die", None) => "exited".into(),
        ("kill", _) => "kill signal sent".into(),
        ("start", _) => "started".into(),
        ("restart", _) => "restarted".into(),
        (other, _) => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            image: "img".into(),
            compose_project: None,
            compose_service: None,
            state: "running".into(),
            limit_bytes: Some(1 << 27),
            capture_label: None,
        }
    }

    fn reading(ws: u64) -> MemoryReading {
        MemoryReading { usage: ws + 10, working_set: ws, rss: ws, cache: 10 }
    }

    /// Every test here runs on both: a SQLite file, and a new database on the
    /// PostgreSQL server `./dev test` starts (`LEAKSCOPE_TEST_POSTGRES`). The URL reopens it.
    fn both() -> Vec<(tempfile::TempDir, String, Store)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = dir.path().join("leakscope.db").display().to_string();
        let postgres = leakscope_db::test_postgres_url();
        vec![(dir, sqlite.clone(), Store::open(&sqlite).unwrap()), (tempfile::tempdir().unwrap(), postgres.clone(), Store::open(&postgres).unwrap())]
    }

    #[test]
    fn samples_roll_up_per_minute_and_series_span_recreated_containers() {
        for (_dir, url, store) in both() {
            let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS;
            let a = store.upsert_container(&record("aaaaaaaaaaaaaaaa", "web"), t0).unwrap();
            // Two ticks in the first minute, one in the second, written as separate transactions.
            store.write_tick(&[SampleRow { container_key: a, time_ms: t0, reading: reading(100), limit_bytes: Some(1000) }], t0).unwrap();
            store.write_tick(&[SampleRow { container_key: a, time_ms: t0 + 30_000, reading: reading(300), limit_bytes: Some(1000) }], t0 + 30_000).unwrap();
            // The container is re-created under the same name.
            let b = store.upsert_container(&record("bbbbbbbbbbbbbbbb", "web"), t0 + 60_000).unwrap();
            assert_ne!(a, b);
            store.write_tick(&[SampleRow { container_key: b, time_ms: t0 + 60_000, reading: reading(500), limit_bytes: None }], t0 + 61_000).unwrap();

            let raw = store.series("web", t0, t0 + 120_000, 1, SeriesSource::Raw).unwrap();
            assert_eq!(raw.iter().map(|p| p.working_set_bytes).collect::<Vec<_>>(), vec![100, 300, 500], "{url}");
            assert_eq!(raw[2].limit_bytes, None);

            let rolled = store.series("web", t0, t0 + 120_000, MINUTE_MS, SeriesSource::Rollup1m).unwrap();
            assert_eq!(rolled.len(), 1, "only the completed minute is rolled up: {rolled:?}");
            assert_eq!((rolled[0].working_set_min_bytes, rolled[0].working_set_bytes, rolled[0].working_set_max_bytes), (100, 200, 300));
            assert_eq!(store.recent_minutes(a, t0).unwrap(), vec![(t0, 200)]);
            // Sizes past 4 GiB keep every byte (64-bit columns on both).
            let big = 5u64 << 32;
            store.write_tick(&[SampleRow { container_key: b, time_ms: t0 + 90_000, reading: reading(big), limit_bytes: Some(big) }], t0 + 91_000).unwrap();
            let last = store.series("web", t0 + 90_000, t0 + 91_000, 1, SeriesSource::Raw).unwrap();
            assert_eq!((last[0].working_set_bytes, last[0].limit_bytes), (big, Some(big)));
            let until = store.last_sample_times(&[a, b, b + 1000]).unwrap();
            assert_eq!(until, [(a, t0 + 30_000), (b, t0 + 90_000)].into_iter().collect(), "{url}");

            // Reopening (as after kill -9) keeps everything committed.
            drop(store);
            let store = Store::open(&url).unwrap();
            assert_eq!(store.series("web", t0, t0 + 120_000, 1, SeriesSource::Raw).unwrap().len(), 4);
            let (key, found) = store.find_container("web").unwrap().unwrap();
            assert_eq!((key, found.id.as_str()), (b, "bbbbbbbbbbbbbbbb"));
            assert_eq!(store.find_container("aaaaaaaaaaaa").unwrap().unwrap().0, a);
            assert!(store.find_container("nope").unwrap().is_none());
            store.mark_removed("bbbbbbbbbbbbbbbb").unwrap();
            assert_eq!(store.find_container("web").unwrap().unwrap().1.state, "removed");

            assert_eq!(store.prune(t0 + 120_000, Retention { raw_ms: 60_000, minutes_ms: 1_000_000, hours_ms: 1_000_000 }).unwrap(), 2);
        }
    }

    #[test]
    fn finished_hours_roll_up_from_their_minutes_and_older_files_are_filled_in() {
        for (_dir, url, store) in both() {
            let t0 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS;
            let key = store.upsert_container(&record("aaaaaaaaaaaaaaaa", "web"), t0).unwrap();
            // A sample every 10 minutes for two and a half hours: 100, 200, … in the first hour.
            for i in 0..15i64 {
                let t = t0 + i * 10 * MINUTE_MS;
                let row = SampleRow { container_key: key, time_ms: t, reading: reading(100 * (i as u64 + 1)), limit_bytes: Some(10_000) };
                store.write_tick(&[row], t + 1_000).unwrap();
            }
            let hours = |store: &Store| store.series("web", t0, t0 + 3 * HOUR_MS, HOUR_MS, SeriesSource::Rollup1h).unwrap();
            let rolled = hours(&store);
            // The third hour is not over: only two.
            assert_eq!(rolled.len(), 2, "{url}: {rolled:?}");
            assert_eq!((rolled[0].time_ms, rolled[0].working_set_min_bytes, rolled[0].working_set_bytes, rolled[0].working_set_max_bytes), (t0, 100, 350, 600));
            assert_eq!((rolled[1].working_set_min_bytes, rolled[1].working_set_max_bytes, rolled[1].limit_bytes), (700, 1200, Some(10_000)));
            // Steps of several hours are averaged by sample count, like minutes.
            let two = store.series("web", t0, t0 + 3 * HOUR_MS, 2 * HOUR_MS, SeriesSource::Rollup1h).unwrap();
            assert_eq!(two[0].working_set_bytes, 650);

            // A file from before the hourly table: filled from the minutes kept.
            let db = store.db();
            db.run(async {
                for sql in ["DROP TABLE rollup_1h", "DELETE FROM meta WHERE key = 'rollup_1h_watermark_ms'", "UPDATE leakscope_schema SET version = 1 WHERE component = 'samples'"] {
                    sqlx::query(sql).execute(db.pool()).await?;
                }
                Ok::<_, sqlx::Error>(())
            })
            .unwrap();
            drop(store);
            let store = Store::open(&url).unwrap();
            // The next tick rolls up every finished hour of the minutes kept.
            let t = t0 + 3 * HOUR_MS + MINUTE_MS;
            store.write_tick(&[SampleRow { container_key: key, time_ms: t, reading: reading(5_000), limit_bytes: Some(10_000) }], t + 1_000).unwrap();
            assert_eq!(hours(&store)[..2], rolled[..], "{url}");
            let third = store.series("web", t0 + 2 * HOUR_MS, t0 + 3 * HOUR_MS, HOUR_MS, SeriesSource::Rollup1h).unwrap();
            assert_eq!((third[0].working_set_min_bytes, third[0].working_set_max_bytes), (1300, 1500), "{url}");

            // Hours are kept longer than minutes.
            let keep = Retention { raw_ms: 0, minutes_ms: 0, hours_ms: 2 * HOUR_MS };
            store.prune(t0 + 3 * HOUR_MS + 30 * MINUTE_MS, keep).unwrap();
            assert!(store.series("web", t0, t + 1, MINUTE_MS, SeriesSource::Rollup1m).unwrap().is_empty());
            let left = store.series("web", t0, t + 1, HOUR_MS, SeriesSource::Rollup1h).unwrap();
            assert_eq!(left.iter().map(|p| p.time_ms).collect::<Vec<_>>(), [t0 + 2 * HOUR_MS], "{url}");
        }
    }

    #[test]
    fn events_are_kept_once_and_oom_kills_counted() {
        for (_dir, url, store) in both() {
            let event = |t: i64, action: &str, exit_code: Option<i64>| ContainerEvent { time_ms: t, action: action.into(), exit_code, label: String::new() };
            assert_eq!(store.latest_event_ms().unwrap(), None, "{url}");
            assert!(store.insert_event(&event(1_000, "oom", None), "x", "web").unwrap());
            assert!(store.insert_event(&event(1_500, "die", Some(137)), "x", "web").unwrap());
            // A replay after a reconnect.
            assert!(!store.insert_event(&event(1_500, "die", Some(137)), "x", "web").unwrap());
            assert_eq!(store.latest_event_ms().unwrap(), Some(1_500));
            assert_eq!(store.oom_kills_by_name().unwrap().get("web"), Some(&1));
            let labels: Vec<String> = store.events("web", 0, 10_000).unwrap().into_iter().map(|e| e.label).collect();
            assert_eq!(labels, ["out of memory", "OOM killed (137)"]);
        }
    }

    #[test]
    fn pruning_goes_container_by_container_in_batches() {
        for (_dir, url, store) in both() {
            let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS;
            let containers = PRUNE_BATCH as usize * 2 + 5;
            let rows: Vec<SampleRow> = (0..containers)
                .map(|i| store.upsert_container(&record(&format!("{i:016x}"), &format!("c{i}")), t0).unwrap())
                .flat_map(|key| {
                    [0, 2 * MINUTE_MS].map(|dt| SampleRow { container_key: key, time_ms: t0 + dt, reading: reading(100), limit_bytes: None })
                })
                .collect();
            store.write_tick(&rows, t0 + 3 * MINUTE_MS).unwrap();
            let event = ContainerEvent { time_ms: t0, action: "oom".into(), exit_code: None, label: String::new() };
            store.insert_event(&event, "x", "c1").unwrap();
            // Three steps (two full batches and the rest); everything before t0 + 1 min goes.
            let none = Retention { raw_ms: 0, minutes_ms: 0, hours_ms: 0 };
            let (first, next) = store.prune_step(t0 + MINUTE_MS, none, 0).unwrap();
            let (second, next) = store.prune_step(t0 + MINUTE_MS, none, next.unwrap()).unwrap();
            let (third, next) = store.prune_step(t0 + MINUTE_MS, none, next.unwrap()).unwrap();
            assert_eq!(next, None, "{url}");
            // Per container: one raw sample and one rollup minute; and the event.
            assert_eq!((first, second, third), (2 * PRUNE_BATCH as usize + 1, 2 * PRUNE_BATCH as usize, 2 * 5));
            assert!(store.oom_kills_by_name().unwrap().is_empty());
            assert_eq!(store.series("c7", t0, t0 + 10 * MINUTE_MS, 1, SeriesSource::Raw).unwrap().len(), 1);
        }
    }

    /// The plan of every statement that runs per tick, per page or over every
    /// row: rows of samples, rollups and events are found through an index,
    /// never by reading the table. SQLite: `EXPLAIN QUERY PLAN`; PostgreSQL:
    /// `EXPLAIN` with sequential scans made a last resort, so a scan in the
    /// plan means no index serves the statement (its tables here are empty,
    /// where a scan would otherwise be the cheapest plan).
    #[test]
    fn hot_statements_search_by_index_and_never_scan_growing_tables() {
        for (_dir, url, store) in both() {
            let db = store.db();
            let plans: Vec<(&str, Vec<String>)> = db
                .run(async {
                    let mut conn = db.pool().acquire().await?;
                    let postgres = db.backend() == leakscope_db::Backend::Postgres;
                    if postgres {
                        sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await?;
                    }
                    let mut plans = Vec::new();
                    for sql in [
                        ROLLUP_MINUTES, ROLLUP_HOURS, SERIES_RAW, SERIES_ROLLUP, SERIES_HOURLY, LAST_SAMPLE, RECENT_MINUTES, EVENTS_OF_NAME, OOM_KILLS,
                        LATEST_EVENT, KEYS_AFTER, PRUNE_SAMPLES, PRUNE_ROLLUPS, PRUNE_HOURS, PRUNE_EVENTS,
                    ] {
                        let explain = if postgres { format!("EXPLAIN {sql}") } else { format!("EXPLAIN QUERY PLAN {sql}") };
                        let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
                        // A name where the statement compares one, a number elsewhere.
                        for n in (1..=9).filter(|n| sql.contains(&format!("${n}"))) {
                            query = if sql.contains(&format!("name = ${n}")) { query.bind("web") } else { query.bind(1i64) };
                        }
                        let column = if postgres { 0 } else { 3 };
                        let plan = query.fetch_all(&mut *conn).await?.iter().map(|row| row.try_get::<String, _>(column)).collect::<Result<_, _>>()?;
                        plans.push((sql, plan));
                    }
                    if postgres {
                        sqlx::query("RESET enable_seqscan").execute(&mut *conn).await?;
                    }
                    Ok(plans)
                })
                .unwrap();
            for (sql, plan) in plans {
                assert!(!plan.is_empty(), "{url}: no plan for {sql}");
                for step in &plan {
                    for table in ["samples", "rollup_1m", "rollup_1h", "events"] {
                        let scan = step.trim_start().starts_with(&format!("SCAN {table}")) || step.contains(&format!("Seq Scan on {table}"));
                        assert!(!scan, "{url}: {sql}\nreads {table} whole: {plan:#?}");
                    }
                }
            }
        }
    }
}
