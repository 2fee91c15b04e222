//! The memory history's figures on this machine, SQLite and PostgreSQL side by
//! side in one run: how many samples a second each stores (the sampler's ticks,
//! one transaction per tick with its roll-up), and how long the chart's query
//! for 30 days of one container takes among many.
//!
//! ```text
//! LEAKSCOPE_TEST_POSTGRES=postgres://postgres@127.0.0.1:55432/postgres \
//!   cargo run --release -p leakscope-engine --example store_bench -- [containers] [history-containers]
//! ```
//! (`./dev test` starts that PostgreSQL; each run makes a database of its own on it.)
//!
//! `store_bench -- year [containers=5000]`: a year of hourly rollups for that many
//! containers (written straight into the table, as a year of ticks would leave it),
//! then the chart's queries for a year and for 90 days of one of them, and one
//! pruning pass that drops the oldest day of every container, on each store.

use std::time::Instant;

use leakscope_db::sqlx;

use leakscope_engine::memory::MemoryReading;
use leakscope_engine::store::{ContainerRecord, SampleRow, SeriesSource, Store};

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn record(i: usize) -> ContainerRecord {
    ContainerRecord {
        id: format!("{i:064x}"),
        name: format!("bench-{i}"),
        image: "bench".into(),
        compose_project: None,
        compose_service: None,
        state: "running".into(),
        limit_bytes: Some(512 << 20),
        capture_label: None,
    }
}

fn row(key: i64, time_ms: i64) -> SampleRow {
    let ws = 100_000_000 + (time_ms / 1000 % 977) as u64 * 4096 + key as u64;
    SampleRow { container_key: key, time_ms, reading: MemoryReading { usage: ws + 4096, working_set: ws, rss: ws, cache: 4096 }, limit_bytes: Some(512 << 20) }
}

/// Samples a second over `ticks` ticks of one row per container (2 s apart, as the sampler writes).
fn write_rate(store: &Store, keys: &[i64], start: i64, ticks: i64) -> f64 {
    let began = Instant::now();
    for tick in 0..ticks {
        let t = start + tick * 2_000;
        let rows: Vec<SampleRow> = keys.iter().map(|&k| row(k, t)).collect();
        store.write_tick(&rows, t).unwrap();
    }
    (keys.len() as i64 * ticks) as f64 / began.elapsed().as_secs_f64()
}

/// A chart query's time in ms, median of 20.
fn chart_ms(store: &Store, name: &str, from: i64, to: i64, step: i64, source: SeriesSource, at_least: usize) -> f64 {
    let mut took: Vec<f64> = (0..20)
        .map(|_| {
            let began = Instant::now();
            let points = store.series(name, from, to, step, source).unwrap();
            assert!(points.len() >= at_least, "{} points", points.len());
            began.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    took.sort_by(f64::total_cmp);
    took[took.len() / 2]
}

/// A new SQLite file (in the returned folder) and a new database on the test PostgreSQL, with their labels.
fn both_stores() -> (tempfile::TempDir, [(&'static str, String); 2]) {
    let admin = std::env::var("LEAKSCOPE_TEST_POSTGRES").expect("LEAKSCOPE_TEST_POSTGRES: a PostgreSQL server (./dev test starts one)");
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("leakscope.db").display().to_string();
    (dir, [("SQLite", sqlite), ("PostgreSQL", leakscope_db::fresh_postgres_database(&admin).unwrap())])
}

fn year_of_history(containers: usize) {
    use sqlx::Executor;
    const HOUR: i64 = 60 * MINUTE;
    let (_dir, backends) = both_stores();
    println!("| Store | hourly rows ({containers} containers × 365 days) | written in | 1-year chart of one (584 points, median of 20) | 90-day chart | pruning the oldest day of all: total, longest step |");
    println!("|---|---|---|---|---|---|");
    for (label, url) in backends {
        let store = Store::open(&url).unwrap();
        let now = leakscope_engine::now_ms() / HOUR * HOUR;
        let from = now - 365 * DAY;
        let keys: Vec<i64> = (0..containers).map(|i| store.upsert_container(&record(i), from).unwrap()).collect();
        let db = store.db();
        let began = Instant::now();
        // One statement per container (its 8 760 hours from a recursive CTE, valid on both), 100 per transaction.
        let fill = "INSERT INTO rollup_1h (ckey, hour_ms, n, ws_min, ws_avg, ws_max, usage_avg, lim)
            WITH RECURSIVE h(t) AS (SELECT CAST($2 AS BIGINT) UNION ALL SELECT t + 3600000 FROM h WHERE t + 3600000 < $3)
            SELECT $1, t, 1800, 100000000 + $1, 110000000 + $1 + (t / 3600000) % 977 * 4096, 120000000 + $1, 111000000, 536870912 FROM h";
        for batch in keys.chunks(100) {
            db.run(async {
                let mut tx = db.begin_write().await?;
                for &key in batch {
                    sqlx::query(fill).bind(key).bind(from).bind(now).execute(&mut *tx).await?;
                }
                tx.commit().await
            })
            .unwrap();
        }
        let written = began.elapsed().as_secs_f64();
        let rows: i64 = db.run(async { sqlx::Row::try_get(&db.pool().fetch_one("SELECT count(*) FROM rollup_1h").await?, 0) }).unwrap();
        let name = format!("bench-{}", containers / 2);
        let year = chart_ms(&store, &name, from, now, 15 * HOUR, SeriesSource::Rollup1h, 580);
        let quarter = chart_ms(&store, &name, now - 90 * DAY, now, 4 * HOUR, SeriesSource::Rollup1h, 530);
        // The sampler's pruning: batches of containers, each its own transaction.
        let keep = leakscope_engine::store::Retention { raw_ms: 2 * DAY, minutes_ms: 90 * DAY, hours_ms: 364 * DAY };
        let began = Instant::now();
        let (mut removed, mut after, mut longest) = (0, Some(0), 0f64);
        while let Some(key) = after {
            let step = Instant::now();
            let (n, next) = store.prune_step(now, keep, key).unwrap();
            longest = longest.max(step.elapsed().as_secs_f64() * 1000.0);
            removed += n;
            after = next;
        }
        let pruned = began.elapsed().as_secs_f64();
        assert_eq!(removed as usize, containers * 24, "a day of hours per container");
        println!("| {label} | {rows} | {written:.0} s | {year:.1} ms | {quarter:.1} ms | {pruned:.2} s, {longest:.0} ms |");
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("year") {
        year_of_history(std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(5000));
        return;
    }
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let containers = args.first().copied().unwrap_or(1000);
    let history_containers = args.get(1).copied().unwrap_or(20);
    let (_dir, backends) = both_stores();
    println!("| Store | samples/s, {containers} containers a tick | samples/s, 100 a tick | 30-day chart of one of {history_containers} containers (median of 20) |");
    println!("|---|---|---|---|");
    for (label, url) in backends {
        let store = Store::open(&url).unwrap();
        let now = leakscope_engine::now_ms() / MINUTE * MINUTE;
        let keys: Vec<i64> = (0..containers).map(|i| store.upsert_container(&record(i), now).unwrap()).collect();
        // 30 days of one sample a minute for the first containers, written an hour at a time
        // (their roll-ups with them), then the chart's query: 30 days in 720 points.
        let history = &keys[..history_containers.min(keys.len())];
        let from = now - 30 * DAY;
        let mut t = from;
        while t < now {
            let rows: Vec<SampleRow> = (0..60).flat_map(|m| history.iter().map(move |&k| row(k, t + m * MINUTE))).collect();
            store.write_tick(&rows, t + 60 * MINUTE).unwrap();
            t += 60 * MINUTE;
        }
        let chart = chart_ms(&store, "bench-0", from, now, 30 * DAY / 720, SeriesSource::Rollup1m, 700);
        // Then the sampler's ticks, after that history (each tick rolls up the minute it completes).
        let many = write_rate(&store, &keys, now, 60);
        let few = write_rate(&store, &keys[..100.min(keys.len())], now + 60 * 2_000, 300);
        println!("| {label} | {many:.0} | {few:.0} | {chart:.1} ms |");
    }
}
