//! Background work: keep a connection to the engine (reconnecting by itself),
//! follow containers through the events stream, sample memory on a fixed
//! interval, and prune old data.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use leakscope_model::MemorySnapshot;
use tokio::time::MissedTickBehavior;

use crate::docker::{self, Connection};
use crate::memory::MemoryReading;
use crate::sparkline::{Sparkline, SPARKLINE_MINUTES};
use crate::store::{ContainerRecord, SampleRow};
use crate::{lock, now_ms, read, write, Engine, StatsSource, Tracked};

const RECONNECT_EVERY: Duration = Duration::from_secs(2);
const RESYNC_EVERY: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Engine API stats calls in flight at once: each waits ~1 s for the engine's collector tick.
const API_CONCURRENCY: usize = 128;
/// Over ssh each connection is an ssh session on the host: no more at once than the client keeps
/// between sweeps, so that a sweep reuses them rather than opening new ones.
const API_CONCURRENCY_OVER_SSH: usize = crate::ssh::IDLE_SESSIONS_KEPT;

pub(crate) fn spawn_all(engine: Engine) {
    tokio::spawn(supervise_connection(engine.clone()));
    tokio::spawn(sample_forever(engine.clone()));
    tokio::spawn(crate::detection::assess_forever(engine.clone()));
    tokio::spawn(crate::autocapture::auto_capture_forever(engine.clone()));
    tokio::spawn(crate::background::hold_forever(engine.clone()));
    tokio::spawn(prune_forever(engine));
}

async fn supervise_connection(engine: Engine) {
    loop {
        match docker::connect_with(&engine.inner.address, engine.inner.config.docker_cert_path.as_deref()).await {
            Ok(connection) => {
                tracing::info!(address = %engine.inner.address, version = %connection.engine_version,
                    api = %connection.api_version, "connected to the Docker engine");
                *write(&engine.inner.connection) = Some(connection.clone());
                let error = follow_engine(&engine, &connection).await;
                tracing::warn!(address = %engine.inner.address, %error, "lost the Docker engine");
                *write(&engine.inner.connection) = None;
                set_status(&engine, None, Some(error));
            }
            Err(error) => {
                let changed = read(&engine.inner.status).error.as_deref() != Some(error.as_str());
                if changed {
                    tracing::warn!(address = %engine.inner.address, %error, "Docker engine unreachable; retrying every 2 s");
                }
                set_status(&engine, None, Some(error));
            }
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

fn set_status(engine: &Engine, connection: Option<&Connection>, error: Option<String>) {
    {
        let mut status = write(&engine.inner.status);
        status.connected = connection.is_some();
        status.engine_version = connection.map(|c| c.engine_version.clone());
        // A lost engine keeps its name: its containers stay listed under it.
        if let Some(c) = connection {
            status.host_name = Some(engine.inner.config.host_name.clone().unwrap_or_else(|| c.host_name.clone()));
        }
        status.api_version = connection.map(|c| c.api_version.clone());
        status.error = error;
        status.stats_source = Some(match (&engine.inner.cgroup, engine.inner.config.stats_source) {
            (Some(reader), _) => match reader.layout() {
                crate::cgroup::CgroupLayout::V1 { .. } => "cgroup v1 files".to_string(),
                crate::cgroup::CgroupLayout::V2 { .. } => "cgroup v2 files".to_string(),
            },
            (None, StatsSource::Cgroup) => "cgroup files not found".to_string(),
            (None, _) => "engine stats API".to_string(),
        });
    }
    engine.publish(now_ms());
}

/// Discovers containers, then follows the events stream. Returns why the engine was lost.
async fn follow_engine(engine: &Engine, connection: &Connection) -> String {
    let docker = &connection.docker;
    let mut last_sync = tokio::time::Instant::now() - RESYNC_EVERY;
    let mut since_secs = resume_point(engine).await;
    loop {
        if last_sync.elapsed() >= RESYNC_EVERY {
            if let Err(e) = resync(engine, docker).await {
                return docker::describe_error(&engine.inner.address, &e);
            }
            set_status(engine, Some(connection), None);
            last_sync = tokio::time::Instant::now();
        }
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        let options = EventsOptionsBuilder::default()
            .since(&since_secs.to_string())
            .filters(&filters)
            .build();
        let mut events = docker.events(Some(options));
        let deadline = tokio::time::sleep(RESYNC_EVERY);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                next = events.next() => match next {
                    Some(Ok(event)) => {
                        if let Some(t) = event.time {
                            since_secs = since_secs.max(t);
                        }
                        let action = event.action.clone().unwrap_or_default();
                        let time_ms = event.time_nano.map(|n| n / 1_000_000).or(event.time.map(|t| t * 1000)).unwrap_or_else(now_ms);
                        let attributes = event.actor.as_ref().and_then(|a| a.attributes.clone()).unwrap_or_default();
                        let id = event.actor.and_then(|a| a.id).unwrap_or_default();
                        record_event(engine, &id, &action, time_ms, &attributes).await;
                        if let Err(e) = on_event(engine, docker, &id, &action).await {
                            return docker::describe_error(&engine.inner.address, &e);
                        }
                    }
                    Some(Err(e)) => {
                        // A dropped stream is not yet a lost engine: ask it.
                        if let Err(ping) = docker.ping().await {
                            return format!("{} (events: {})", docker::describe_error(&engine.inner.address, &ping), e);
                        }
                        break;
                    }
                    None => {
                        if let Err(ping) = docker.ping().await {
                            return docker::describe_error(&engine.inner.address, &ping);
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Where the events stream starts after a (re)connect: at the last stored
/// event, so what happened while Leakscope or its connection was down is
/// replayed (the engine keeps its last 256 events; duplicates are ignored).
async fn resume_point(engine: &Engine) -> i64 {
    const LONGEST_GAP_SECS: i64 = 7 * 86400;
    let now = now_ms() / 1000;
    let e = engine.clone();
    let latest = tokio::task::spawn_blocking(move || e.inner.reader.latest_event_ms()).await;
    match latest {
        Ok(Ok(Some(ms))) => (ms / 1000).clamp(now - LONGEST_GAP_SECS, now),
        _ => now,
    }
}

async fn on_event(
    engine: &Engine,
    docker: &bollard::Docker,
    id: &str,
    action: &str,
) -> Result<(), bollard::errors::Error> {
    // exec_*, health_status and similar do not change what we track.
    let relevant = matches!(
        action,
        "create" | "start" | "restart" | "die" | "stop" | "kill" | "oom" | "destroy" | "rename" | "update" | "pause" | "unpause"
    );
    if !relevant || id.is_empty() {
        return Ok(());
    }
    tracing::debug!(%id, %action, "container event");
    if action == "destroy" {
        forget(engine, id).await;
    } else {
        match docker::inspect(docker, id).await? {
            Some(record) => track(engine, record).await,
            None => forget(engine, id).await,
        }
    }
    engine.publish(now_ms());
    Ok(())
}

/// Keeps the lifecycle events that matter for memory (the engine itself keeps only its last 256).
async fn record_event(engine: &Engine, id: &str, action: &str, time_ms: i64, attributes: &HashMap<String, String>) {
    // `kill` events carry the signal; only SIGKILL and SIGTERM are worth a marker.
    let kept = match action {
        "oom" | "die" | "start" | "restart" => true,
        "kill" => matches!(attributes.get("signal").map(String::as_str), Some("9" | "15" | "SIGKILL" | "SIGTERM")),
        _ => false,
    };
    let Some(name) = attributes.get("name").filter(|_| kept && !id.is_empty()) else { return };
    let event = leakscope_model::ContainerEvent {
        time_ms,
        action: action.to_string(),
        exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        label: String::new(),
    };
    let (e, container_id, name) = (engine.clone(), id.to_string(), name.clone());
    let id = container_id.clone();
    let oom = (action == "oom").then(|| leakscope_model::alerts::OomKill { container: name.clone(), host: engine.host_name(), time_ms });
    let stored = tokio::task::spawn_blocking(move || lock(&e.inner.writer).insert_event(&event, &id, &name)).await;
    let inserted = match stored {
        Ok(Ok(inserted)) => inserted,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "could not store a container event");
            false
        }
        Err(_) => false,
    };
    if let Some(oom) = oom {
        // Announced by the server that stored it, and by the lease's holder when it sees
        // a kill live: servers sharing a database race to store it, and a standby that
        // wins sends nothing. A reconnect's replay of older events is not news.
        let live = now_ms() - time_ms < OOM_KILL_NEWS_MS;
        if (inserted || (live && engine.holds_background())) && first_announcement(engine, container_id, time_ms) {
            let _ = engine.inner.oom_kills.send(oom);
        }
    }
}

/// An OOM kill this much older than the clock when it arrives is a replay.
const OOM_KILL_NEWS_MS: i64 = 60_000;

/// Whether this server has not announced this kill yet (remembers its last 256).
fn first_announcement(engine: &Engine, container_id: String, time_ms: i64) -> bool {
    let mut announced = lock(&engine.inner.announced_oom_kills);
    let key = (container_id, time_ms);
    if announced.contains(&key) {
        return false;
    }
    if announced.len() == 256 {
        announced.pop_front();
    }
    announced.push_back(key);
    true
}

/// Lists every container and reconciles the tracked set with it.
async fn resync(engine: &Engine, docker: &bollard::Docker) -> Result<(), bollard::errors::Error> {
    let ids = docker::list_container_ids(docker).await?;
    let records: Vec<_> = futures::stream::iter(ids.into_iter().map(|id| {
        let docker = docker.clone();
        async move { docker::inspect(&docker, &id).await }
    }))
    .buffer_unordered(16)
        .collect()
        .await;
    let mut seen = Vec::new();
    for record in records {
        if let Some(record) = record? {
            seen.push(record.id.clone());
            track(engine, record).await;
        }
    }
    let gone: Vec<String> = read(&engine.inner.containers)
        .keys()
        .filter(|id| !seen.contains(id))
        .cloned()
        .collect();
    for id in gone {
        forget(engine, &id).await;
    }
    Ok(())
}

async fn track(engine: &Engine, record: ContainerRecord) {
    let known = read(&engine.inner.containers).get(&record.id).map(|t| (t.key, t.record.clone()));
    if let Some((_, ref old)) = known {
        if *old == record {
            return;
        }
    }
    let store_engine = engine.clone();
    let rec = record.clone();
    let fresh = known.is_none();
    let result = tokio::task::spawn_blocking(move || {
        let now = now_ms();
        let store = lock(&store_engine.inner.writer);
        let key = store.upsert_container(&rec, now)?;
        let recent = if fresh {
            store.recent_minutes(key, now - SPARKLINE_MINUTES * 60_000)?
        } else {
            Vec::new()
        };
        Ok::<_, leakscope_db::DbError>((key, recent))
    })
    .await;
    let (key, recent) = match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(id = %record.id, error = %e, "cannot record container");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "storage task failed");
            return;
        }
    };
    let cgroup_dir = engine.inner.cgroup.as_ref().and_then(|c| c.locate(&record.id));
    let mut containers = write(&engine.inner.containers);
    let tracked = containers.entry(record.id.clone()).or_insert_with(|| {
        let mut sparkline = Sparkline::default();
        for (minute, mean) in &recent {
            sparkline.seed(*minute, *mean);
        }
        Tracked { key, record: record.clone(), cgroup_dir: None, latest: None, sparkline }
    });
    if record.state != "running" {
        tracked.latest = None;
    }
    tracked.key = key;
    tracked.record = record;
    tracked.cgroup_dir = cgroup_dir;
}

async fn forget(engine: &Engine, id: &str) {
    if write(&engine.inner.containers).remove(id).is_none() {
        return;
    }
    let store_engine = engine.clone();
    let id = id.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = lock(&store_engine.inner.writer).mark_removed(&id) {
            tracing::error!(%id, error = %e, "cannot mark container removed");
        }
    })
    .await;
}

async fn sample_forever(engine: Engine) {
    let mut ticker = tokio::time::interval(engine.inner.config.sample_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        sample_once(&engine).await;
    }
}

/// One sweep: read every running container, write one transaction, publish.
pub(crate) async fn sample_once(engine: &Engine) {
    let Ok(docker) = engine.docker() else {
        // No engine, no samples: the chart shows the gap.
        engine.publish(now_ms());
        return;
    };
    let targets: Vec<(String, i64, Option<std::path::PathBuf>, Option<u64>)> = read(&engine.inner.containers)
        .values()
        .filter(|t| t.record.state == "running")
        .map(|t| (t.record.id.clone(), t.key, t.cgroup_dir.clone(), t.record.limit_bytes))
        .collect();
    let time_ms = now_ms();
    let use_api = engine.inner.config.stats_source != StatsSource::Cgroup;
    let mut readings: Vec<(String, i64, Option<u64>, MemoryReading)> = Vec::with_capacity(targets.len());
    let mut via_api = Vec::new();
    for (id, key, dir, limit) in targets {
        let from_file = match (&engine.inner.cgroup, dir) {
            (Some(reader), Some(dir)) => reader.read(&dir).ok(),
            // The cgroup may not have existed yet when the container was first seen.
            (Some(reader), None) => reader.locate(&id).and_then(|found| {
                let reading = reader.read(&found).ok();
                if let Some(t) = write(&engine.inner.containers).get_mut(&id) {
                    t.cgroup_dir = Some(found);
                }
                reading
            }),
            _ => None,
        };
        match from_file {
            Some(reading) => readings.push((id, key, limit, reading)),
            None if use_api => via_api.push((id, key, limit)),
            None => {}
        }
    }
    if !via_api.is_empty() {
        let answers: Vec<_> = futures::stream::iter(via_api.into_iter().map(|(id, key, limit)| {
            let docker = docker.clone();
            async move {
                let reading = docker::api_reading(&docker, &id).await;
                (id, key, limit, reading)
            }
        }))
        .buffer_unordered(if engine.inner.address.starts_with("ssh://") { API_CONCURRENCY_OVER_SSH } else { API_CONCURRENCY })
        .collect()
        .await;
        for (id, key, limit, reading) in answers {
            match reading {
                Ok(Some(r)) => readings.push((id, key, limit, r)),
                Ok(None) => {}
                Err(e) => tracing::debug!(%id, error = %e, "stats call failed"),
            }
        }
    }
    let rows: Vec<SampleRow> = readings
        .iter()
        .map(|(_, key, limit, reading)| SampleRow { container_key: *key, time_ms, reading: *reading, limit_bytes: *limit })
        .collect();
    // Servers sharing one database all sample (each serves live views), but only the
    // holder of the background lease writes, so a tick is stored and rolled up once.
    let store_engine = engine.clone();
    let hold = engine.holds_background();
    let backlog: Vec<SampleRow> = {
        let mut kept = lock(&engine.inner.standby_ticks);
        if hold {
            kept.drain(..).flat_map(|(_, rows)| rows).collect()
        } else {
            kept.push_back((time_ms, rows.clone()));
            while kept.front().is_some_and(|(t, _)| time_ms - t > STANDBY_BACKLOG_MS) {
                kept.pop_front();
            }
            Vec::new()
        }
    };
    let written = tokio::task::spawn_blocking(move || {
        if !hold {
            return Ok(());
        }
        let writer = lock(&store_engine.inner.writer);
        let mut rows = rows;
        if !backlog.is_empty() {
            // Just took over: what this server sampled after the last tick its predecessor
            // stored (whose minutes it had not rolled up yet).
            let mut keys: Vec<i64> = backlog.iter().map(|r| r.container_key).collect();
            keys.sort_unstable();
            keys.dedup();
            let stored_until = writer.last_sample_times(&keys)?.into_values().max().unwrap_or(i64::MIN);
            rows.extend(backlog.into_iter().filter(|r| r.time_ms > stored_until));
        }
        writer.write_tick(&rows, time_ms)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write samples (disk full?); they stay in memory only"),
        Err(e) => tracing::error!(error = %e, "storage task failed"),
    }
    {
        let mut containers = write(&engine.inner.containers);
        for (id, _, limit, reading) in readings {
            if let Some(t) = containers.get_mut(&id) {
                t.sparkline.push(time_ms, reading.working_set);
                t.latest = Some(MemorySnapshot {
                    time_ms,
                    working_set_bytes: reading.working_set,
                    usage_bytes: reading.usage,
                    rss_bytes: reading.rss,
                    cache_bytes: reading.cache,
                    limit_bytes: limit,
                    limit_set: limit.is_some(),
                });
            }
        }
    }
    engine.publish(time_ms);
}

/// How long a standby keeps its ticks: past the lease's expiry, the longest its
/// holder can be gone before this server takes over.
const STANDBY_BACKLOG_MS: i64 = 30_000;

async fn prune_forever(engine: Engine) {
    let mut ticker = tokio::time::interval(PRUNE_EVERY);
    loop {
        ticker.tick().await;
        if !engine.holds_background() {
            continue; // another server sharing the database prunes
        }
        let e = engine.clone();
        let config = &e.inner.config;
        let keep = crate::store::Retention {
            raw_ms: config.raw_retention.as_millis() as i64,
            minutes_ms: config.rollup_retention.as_millis() as i64,
            hours_ms: config.hourly_retention.as_millis() as i64,
        };
        // One batch of containers per hold of the writer: ticks write between batches.
        let result = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let (mut removed, mut after) = (0, Some(0));
            while let Some(key) = after {
                let (n, next) = lock(&e.inner.writer).prune_step(now, keep, key)?;
                removed += n;
                after = next;
            }
            Ok::<_, leakscope_db::DbError>(removed)
        })
        .await;
        match result {
            Ok(Ok(n)) if n > 0 => tracing::info!(rows = n, "pruned old samples"),
            Ok(Err(e)) => tracing::error!(error = %e, "pruning failed"),
            _ => {}
        }
    }
}
