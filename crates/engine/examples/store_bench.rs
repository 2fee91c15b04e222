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

use std::time::Instant;

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

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let containers = args.first().copied().unwrap_or(1000);
    let history_containers = args.get(1).copied().unwrap_or(20);
    let admin = std::env::var("LEAKSCOPE_TEST_POSTGRES").expect("LEAKSCOPE_TEST_POSTGRES: a PostgreSQL server (./dev test starts one)");
    let dir = tempfile::tempdir().unwrap();
    let backends = [
        ("SQLite", dir.path().join("leakscope.db").display().to_string()),
        ("PostgreSQL", leakscope_db::fresh_postgres_database(&admin).unwrap()),
    ];
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
        let mut took: Vec<f64> = (0..20)
            .map(|_| {
                let began = Instant::now();
                let points = store.series("bench-0", from, now, 30 * DAY / 720, SeriesSource::Rollup1m).unwrap();
                assert!(points.len() >= 700, "{} points", points.len());
                began.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        took.sort_by(f64::total_cmp);
        // Then the sampler's ticks, after that history (each tick rolls up the minute it completes).
        let many = write_rate(&store, &keys, now, 60);
        let few = write_rate(&store, &keys[..100.min(keys.len())], now + 60 * 2_000, 300);
        println!("| {label} | {many:.0} | {few:.0} | {:.1} ms |", took[took.len() / 2]);
    }
}
