//! SQLite storage: containers seen, raw samples (kept 48 h by default) and
//! 1-minute rollups (kept 90 days). WAL mode: a `kill -9` loses at most the
//! tick being written, never a committed one.

use std::path::Path;

use leakscope_model::ContainerEvent;
use leakscope_model::MemoryPoint;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::EngineError;
use crate::memory::MemoryReading;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    image TEXT NOT NULL,
    compose_project TEXT,
    compose_service TEXT,
    state TEXT NOT NULL,
    limit_bytes INTEGER,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS containers_by_name ON containers(name, last_seen_ms);
CREATE TABLE IF NOT EXISTS samples (
    ckey INTEGER NOT NULL,
    t INTEGER NOT NULL,
    ws INTEGER NOT NULL,
    usage INTEGER NOT NULL,
    rss INTEGER NOT NULL,
    cache INTEGER NOT NULL,
    lim INTEGER,
    PRIMARY KEY (ckey, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1m (
    ckey INTEGER NOT NULL,
    minute_ms INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ws_min INTEGER NOT NULL,
    ws_avg INTEGER NOT NULL,
    ws_max INTEGER NOT NULL,
    usage_avg INTEGER NOT NULL,
    lim INTEGER,
    PRIMARY KEY (ckey, minute_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Container lifecycle events, kept ourselves (the engine remembers only its last 256).
CREATE TABLE IF NOT EXISTS events (
    container_id TEXT NOT NULL,
    name TEXT NOT NULL,
    t_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    exit_code INTEGER,
    PRIMARY KEY (container_id, t_ms, action)
);
CREATE INDEX IF NOT EXISTS events_by_name ON events(name, t_ms);
-- The dashboard's OOM counts, and pruning and replay by time (see `HOT_QUERIES`).
CREATE INDEX IF NOT EXISTS events_by_action ON events(action, name);
CREATE INDEX IF NOT EXISTS events_by_time ON events(t_ms);
";

/// Statements that run every tick, every page view or over every row, kept
/// here so the test can check each one's plan: none may scan `samples`,
/// `rollup_1m` or `events` whole (those grow with containers × time; only
/// `containers`, one row per container ever seen, may be read whole).
/// Samples are keyed by (container, time), so every range on time goes
/// through the container keys.
const ROLLUP_MINUTES: &str = "INSERT OR REPLACE INTO rollup_1m (ckey, minute_ms, n, ws_min, ws_avg, ws_max, usage_avg, lim)
     SELECT ckey, (t / 60000) * 60000, count(*), min(ws), CAST(avg(ws) AS INTEGER), max(ws),
            CAST(avg(usage) AS INTEGER), max(lim)
     FROM samples WHERE ckey IN (SELECT key FROM containers) AND t >= ?1 AND t < ?2 GROUP BY ckey, t / 60000";
const SERIES_RAW: &str = "SELECT (t / ?4) * ?4 AS b, CAST(avg(ws) AS INTEGER), min(ws), max(ws), CAST(avg(usage) AS INTEGER), max(lim)
     FROM samples WHERE ckey IN (SELECT key FROM containers WHERE name = ?1) AND t >= ?2 AND t < ?3
     GROUP BY b ORDER BY b";
const SERIES_ROLLUP: &str = "SELECT (minute_ms / ?4) * ?4 AS b, CAST(sum(ws_avg * n) / sum(n) AS INTEGER), min(ws_min), max(ws_max),
            CAST(sum(usage_avg * n) / sum(n) AS INTEGER), max(lim)
     FROM rollup_1m WHERE ckey IN (SELECT key FROM containers WHERE name = ?1) AND minute_ms >= ?2 AND minute_ms < ?3
     GROUP BY b ORDER BY b";
const RECENT_MINUTES: &str =
    "SELECT (t / 60000) * 60000 AS m, CAST(avg(ws) AS INTEGER) FROM samples WHERE ckey = ?1 AND t >= ?2 GROUP BY m ORDER BY m";
const EVENTS_OF_NAME: &str =
    "SELECT t_ms, action, exit_code, container_id FROM events WHERE name = ?1 AND t_ms >= ?2 AND t_ms < ?3 ORDER BY t_ms";
const OOM_KILLS: &str = "SELECT name, COUNT(*) FROM events WHERE action = 'oom' GROUP BY name";
const LATEST_EVENT: &str = "SELECT MAX(t_ms) FROM events";
/// A batch of container keys, in key order, for pruning.
const KEYS_AFTER: &str = "SELECT key FROM containers WHERE key > ?1 ORDER BY key LIMIT ?2";
const PRUNE_SAMPLES: &str = "DELETE FROM samples WHERE ckey = ?1 AND t < ?2";
const PRUNE_ROLLUPS: &str = "DELETE FROM rollup_1m WHERE ckey = ?1 AND minute_ms < ?2";
const PRUNE_EVENTS: &str = "DELETE FROM events WHERE t_ms < ?1";

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
}

impl SeriesSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesSource::Raw => "raw",
            SeriesSource::Rollup1m => "rollup_1m",
        }
    }
}

pub struct Store {
    conn: Connection,
}

/// A connection in WAL mode (readers never block the writer; a crash loses at
/// most the transaction in flight) with `schema` applied. Its page cache is
/// held to 1 MiB: SQLite's default (2 MiB per connection, five connections)
/// fills slowly as the database grows, and showed as an hour of rising
/// resident memory in the soak; the file stays in the kernel's page cache anyway.
pub(crate) fn open_sqlite(path: &Path, schema: &str) -> Result<Connection, EngineError> {
    let conn = Connection::open(path).map_err(|e| EngineError::store(path, e))?;
    // busy_timeout first, so that the steps after it wait for a lock instead of failing.
    conn.execute_batch("PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-1024;")
        .map_err(|e| EngineError::store(path, e))?;
    conn.execute_batch(schema).map_err(|e| EngineError::store(path, e))?;
    Ok(conn)
}

const MINUTE_MS: i64 = 60_000;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        Ok(Store { conn: open_sqlite(path, SCHEMA)? })
    }

    /// Records a container (new or changed) and returns its key.
    pub fn upsert_container(&self, c: &ContainerRecord, now_ms: i64) -> rusqlite::Result<i64> {
        self.conn.query_row(
            "INSERT INTO containers (id, name, image, compose_project, compose_service, state, limit_bytes, first_seen_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, image = excluded.image,
                compose_project = excluded.compose_project, compose_service = excluded.compose_service,
                state = excluded.state, limit_bytes = excluded.limit_bytes, last_seen_ms = excluded.last_seen_ms, removed = 0
             RETURNING key",
            params![c.id, c.name, c.image, c.compose_project, c.compose_service, c.state, c.limit_bytes.map(to_i64), now_ms],
            |row| row.get(0),
        )
    }

    /// Records an event once (replays after a reconnect are ignored).
    /// True when the event is new (a replay after a reconnect is not).
    pub fn insert_event(&self, event: &ContainerEvent, container_id: &str, name: &str) -> rusqlite::Result<bool> {
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO events (container_id, name, t_ms, action, exit_code) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![container_id, name, event.time_ms, event.action, event.exit_code],
        )?;
        Ok(inserted > 0)
    }

    /// OOM kills the engine reported, per container name, over the kept events.
    pub fn oom_kills_by_name(&self) -> rusqlite::Result<std::collections::HashMap<String, u64>> {
        let mut stmt = self.conn.prepare_cached(OOM_KILLS)?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))?;
        rows.collect()
    }

    /// When the last stored event happened (to replay what came after it).
    pub fn latest_event_ms(&self) -> rusqlite::Result<Option<i64>> {
        self.conn.query_row(LATEST_EVENT, [], |row| row.get(0))
    }

    /// Events of every container that had this name, oldest first, with plain-words labels.
    pub fn events(&self, name: &str, from_ms: i64, to_ms: i64) -> rusqlite::Result<Vec<ContainerEvent>> {
        let mut stmt = self.conn.prepare_cached(EVENTS_OF_NAME)?;
        let rows = stmt.query_map(params![name, from_ms, to_ms], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, Option<i64>>(2)?, row.get::<_, String>(3)?))
        })?;
        let raw: Vec<(i64, String, Option<i64>, String)> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(raw
            .iter()
            .map(|(t, action, code, id)| {
                // An exit code of 137 is a SIGKILL; only the engine's own oom event proves an OOM kill.
                let oom_before = raw.iter().any(|(t2, a2, _, id2)| a2 == "oom" && id2 == id && (t - t2).abs() <= 10_000);
                ContainerEvent { time_ms: *t, action: action.clone(), exit_code: *code, label: event_label(action, *code, oom_before) }
            })
            .collect())
    }

    pub fn mark_removed(&self, id: &str) -> rusqlite::Result<()> {
        self.conn.execute("UPDATE containers SET removed = 1, state = 'removed' WHERE id = ?1", [id])?;
        Ok(())
    }

    /// The most recently seen container with this id, id prefix (12+ chars) or name.
    pub fn find_container(&self, id_or_name: &str) -> rusqlite::Result<Option<(i64, ContainerRecord)>> {
        let name = id_or_name.trim_start_matches('/');
        let prefix = if id_or_name.len() >= 12 && id_or_name.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!("{id_or_name}%")
        } else {
            // A value that no id can match.
            String::from("\u{0}")
        };
        self.conn
            .query_row(
                "SELECT key, id, name, image, compose_project, compose_service, state, limit_bytes
                 FROM containers WHERE id = ?1 OR id LIKE ?2 OR name = ?3
                 ORDER BY last_seen_ms DESC LIMIT 1",
                params![id_or_name, prefix, name],
                |row| {
                    Ok((
                        row.get(0)?,
                        ContainerRecord {
                            id: row.get(1)?,
                            name: row.get(2)?,
                            image: row.get(3)?,
                            compose_project: row.get(4)?,
                            compose_service: row.get(5)?,
                            state: row.get(6)?,
                            limit_bytes: row.get::<_, Option<i64>>(7)?.map(to_u64),
                            capture_label: None,
                        },
                    ))
                },
            )
            .optional()
    }

    /// Writes one tick's samples and rolls up every minute completed since the
    /// last roll-up, all in one transaction.
    pub fn write_tick(&mut self, rows: &[SampleRow], now_ms: i64) -> rusqlite::Result<()> {
        // IMMEDIATE: the write lock from the start. A transaction that reads and then
        // writes fails at once ("database is locked") when another connection wrote in
        // between, whatever the busy timeout.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO samples (ckey, t, ws, usage, rss, cache, lim) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for row in rows {
                let r = row.reading;
                insert.execute(params![
                    row.container_key,
                    row.time_ms,
                    to_i64(r.working_set),
                    to_i64(r.usage),
                    to_i64(r.rss),
                    to_i64(r.cache),
                    row.limit_bytes.map(to_i64)
                ])?;
            }
        }
        let watermark: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'rollup_watermark_ms'", [], |r| r.get(0))
            .optional()?;
        let current_minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let start = match watermark {
            Some(w) => w,
            None => tx
                .query_row("SELECT min(t) FROM samples", [], |r| r.get::<_, Option<i64>>(0))?
                .map(|t| t.div_euclid(MINUTE_MS) * MINUTE_MS)
                .unwrap_or(current_minute),
        };
        if start < current_minute {
            tx.execute(ROLLUP_MINUTES, params![start, current_minute])?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('rollup_watermark_ms', ?1)",
                [current_minute],
            )?;
        }
        tx.commit()
    }

    /// Drops raw samples and rollups older than their retention for the next
    /// `PRUNE_BATCH` containers after key `after` (start with 0), and events
    /// older than the rollups with the first batch. Returns the rows removed
    /// and the key to continue after, `None` when every container was done.
    pub fn prune_step(&mut self, now_ms: i64, raw_keep_ms: i64, rollup_keep_ms: i64, after: i64) -> rusqlite::Result<(usize, Option<i64>)> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let keys: Vec<i64> = {
            let mut stmt = tx.prepare_cached(KEYS_AFTER)?;
            let rows = stmt.query_map(params![after, PRUNE_BATCH], |row| row.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut removed = 0;
        if after == 0 {
            removed += tx.execute(PRUNE_EVENTS, [now_ms - rollup_keep_ms])?;
        }
        {
            let mut samples = tx.prepare_cached(PRUNE_SAMPLES)?;
            let mut rollups = tx.prepare_cached(PRUNE_ROLLUPS)?;
            for &key in &keys {
                removed += samples.execute(params![key, now_ms - raw_keep_ms])?;
                removed += rollups.execute(params![key, now_ms - rollup_keep_ms])?;
            }
        }
        tx.commit()?;
        let next = (keys.len() as i64 == PRUNE_BATCH).then(|| keys[keys.len() - 1]);
        Ok((removed, next))
    }

    /// Every pruning step at once (tests and tools; the sampler steps itself).
    pub fn prune(&mut self, now_ms: i64, raw_keep_ms: i64, rollup_keep_ms: i64) -> rusqlite::Result<usize> {
        let (mut removed, mut next) = self.prune_step(now_ms, raw_keep_ms, rollup_keep_ms, 0)?;
        while let Some(after) = next {
            let (n, more) = self.prune_step(now_ms, raw_keep_ms, rollup_keep_ms, after)?;
            removed += n;
            next = more;
        }
        Ok(removed)
    }

    /// Memory of every container that ever had this name (history survives
    /// re-creation), in buckets of `step_ms`.
    pub fn series(
        &self,
        name: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        source: SeriesSource,
    ) -> rusqlite::Result<Vec<MemoryPoint>> {
        let step_ms = step_ms.max(1);
        let sql = match source {
            SeriesSource::Raw => SERIES_RAW,
            SeriesSource::Rollup1m => SERIES_ROLLUP,
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![name, from_ms, to_ms, step_ms], |row| {
            Ok(MemoryPoint {
                time_ms: row.get(0)?,
                working_set_bytes: to_u64(row.get(1)?),
                working_set_min_bytes: to_u64(row.get(2)?),
                working_set_max_bytes: to_u64(row.get(3)?),
                usage_bytes: to_u64(row.get(4)?),
                limit_bytes: row.get::<_, Option<i64>>(5)?.map(to_u64),
            })
        })?;
        rows.collect()
    }

    /// Per-minute working set of one container since `since_ms` (seeds sparklines after a restart).
    pub fn recent_minutes(&self, key: i64, since_ms: i64) -> rusqlite::Result<Vec<(i64, u64)>> {
        let mut stmt = self.conn.prepare_cached(RECENT_MINUTES)?;
        let rows = stmt.query_map(params![key, since_ms], |row| Ok((row.get(0)?, to_u64(row.get(1)?))))?;
        rows.collect()
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

    fn temp_store() -> (Store, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "leakscope-store-{}-{}.db",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        (Store::open(&path).unwrap(), path)
    }

    #[test]
    fn samples_roll_up_per_minute_and_series_span_recreated_containers() {
        let (mut store, path) = temp_store();
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
        assert_eq!(raw.iter().map(|p| p.working_set_bytes).collect::<Vec<_>>(), vec![100, 300, 500]);
        assert_eq!(raw[2].limit_bytes, None);

        let rolled = store.series("web", t0, t0 + 120_000, MINUTE_MS, SeriesSource::Rollup1m).unwrap();
        assert_eq!(rolled.len(), 1, "only the completed minute is rolled up: {rolled:?}");
        assert_eq!((rolled[0].working_set_min_bytes, rolled[0].working_set_bytes, rolled[0].working_set_max_bytes), (100, 200, 300));

        // Reopening (as after kill -9) keeps everything committed.
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.series("web", t0, t0 + 120_000, 1, SeriesSource::Raw).unwrap().len(), 3);
        let (key, found) = store.find_container("web").unwrap().unwrap();
        assert_eq!((key, found.id.as_str()), (b, "bbbbbbbbbbbbbbbb"));
        assert_eq!(store.find_container("aaaaaaaaaaaa").unwrap().unwrap().0, a);
        assert!(store.find_container("nope").unwrap().is_none());

        let mut store = store;
        assert_eq!(store.prune(t0 + 120_000, 60_000, 1_000_000).unwrap(), 2);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn pruning_goes_container_by_container_in_batches() {
        let (mut store, path) = temp_store();
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
        let (first, next) = store.prune_step(t0 + MINUTE_MS, 0, 0, 0).unwrap();
        let (second, next) = store.prune_step(t0 + MINUTE_MS, 0, 0, next.unwrap()).unwrap();
        let (third, next) = store.prune_step(t0 + MINUTE_MS, 0, 0, next.unwrap()).unwrap();
        assert_eq!(next, None);
        // Per container: one raw sample and one rollup minute; and the event.
        assert_eq!((first, second, third), (2 * PRUNE_BATCH as usize + 1, 2 * PRUNE_BATCH as usize, 2 * 5));
        assert!(store.oom_kills_by_name().unwrap().is_empty());
        assert_eq!(store.series("c7", t0, t0 + 10 * MINUTE_MS, 1, SeriesSource::Raw).unwrap().len(), 1);
        let _ = std::fs::remove_file(&path);
    }

    /// `EXPLAIN QUERY PLAN` of every statement that runs per tick, per page
    /// or over every row: rows of samples, rollups and events are found
    /// through an index, never by reading the table.
    #[test]
    fn hot_statements_search_by_index_and_never_scan_growing_tables() {
        let (store, path) = temp_store();
        for sql in [
            ROLLUP_MINUTES, SERIES_RAW, SERIES_ROLLUP, RECENT_MINUTES, EVENTS_OF_NAME, OOM_KILLS, LATEST_EVENT, KEYS_AFTER,
            PRUNE_SAMPLES, PRUNE_ROLLUPS, PRUNE_EVENTS,
        ] {
            let mut stmt = store.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let count = stmt.parameter_count();
            let values: Vec<i64> = vec![1; count];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(values), |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            for step in &plan {
                for table in ["samples", "rollup_1m", "events"] {
                    assert!(!step.starts_with(&format!("SCAN {table}")), "{sql}\nreads {table} whole: {plan:?}");
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}
