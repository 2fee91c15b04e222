//! The Leakscope backend: Docker access, memory sampling, storage and the
//! queries pages and the API make. No web framework in here.
//!
//! Architecture invariant: the engine never blocks the async runtime on
//! SQLite or the filesystem; those calls run on the blocking pool.

pub mod autocapture;
mod background;
pub mod capture;
pub mod cgroup;
pub mod channel;
pub mod docker;
pub mod detection;
pub mod dumps;
mod error;
pub mod memory;
pub mod reports;
mod sampler;
pub mod ssh;
mod sparkline;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use leakscope_model::{ContainerDetail, ContainerInfo, EngineStatus, MemorySeries, MemorySnapshot, Overview};
use tokio::sync::watch;

pub use bollard;
pub use autocapture::{AutoCaptureConfig, CapturePolicy};
pub use error::EngineError;
pub use store::{ContainerRecord, SeriesSource, Store};

use cgroup::CgroupReader;
use sparkline::Sparkline;

/// Where memory numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsSource {
    /// Host cgroup files when they can be found for a container, else the Engine API.
    Auto,
    /// Always the Engine API (portable; each call waits for the engine's 1-s tick).
    Api,
    /// Only host cgroup files.
    Cgroup,
}

impl std::str::FromStr for StatsSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StatsSource::Auto),
            "api" => Ok(StatsSource::Api),
            "cgroup" => Ok(StatsSource::Cgroup),
            other => Err(format!("unknown stats source '{other}': use auto, api or cgroup")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// `None`: `DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
    /// TLS for a `tcp://` engine: a directory with `ca.pem`, `cert.pem` and `key.pem`.
    pub docker_cert_path: Option<PathBuf>,
    /// The host's display name; `None`: the engine's own (`docker info`).
    pub host_name: Option<String>,
    pub sample_interval: Duration,
    pub raw_retention: Duration,
    pub rollup_retention: Duration,
    /// How long hourly rollups are kept (charts of months and years read them).
    pub hourly_retention: Duration,
    pub stats_source: StatsSource,
    pub cgroup_root: PathBuf,
    /// Our static capture helper (built for x86_64-unknown-linux-musl), copied into containers.
    pub agent_path: Option<PathBuf>,
    /// The same helper as a jar for the container's own java, for /tmp mounted noexec.
    pub attach_jar_path: Option<PathBuf>,
    /// `s3://bucket/prefix…` to keep dumps in a bucket; `None`: `<data_dir>/dumps`.
    pub dump_store: Option<String>,
    /// `postgres://…` for the tables moved onto `leakscope-db` (dumps' records and reports, so far);
    /// `None`: the data folder's SQLite file.
    pub database: Option<String>,
    /// The leak detector's tuning (defaults: the values the corpus figures were measured with).
    pub detect: leakscope_detect::Params,
    /// Automatic heap dumps (off unless configured or labelled).
    pub auto_capture: AutoCaptureConfig,
    /// How long a Python interpreter may take to start Leakscope's walk (its main
    /// thread may be blocked in a C call) and the walk to finish.
    pub python_walk_timeout: Duration,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            docker_host: None,
            docker_cert_path: None,
            host_name: None,
            dump_store: None,
            database: None,
            sample_interval: Duration::from_secs(2),
            raw_retention: Duration::from_secs(48 * 3600),
            rollup_retention: Duration::from_secs(90 * 86400),
            hourly_retention: Duration::from_secs(2 * 365 * 86400),
            stats_source: StatsSource::Auto,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            agent_path: None,
            attach_jar_path: None,
            detect: leakscope_detect::Params::default(),
            auto_capture: AutoCaptureConfig::default(),
            python_walk_timeout: Duration::from_secs(300),
        }
    }
}

/// A container the engine currently knows about.
struct Tracked {
    key: i64,
    record: ContainerRecord,
    cgroup_dir: Option<PathBuf>,
    latest: Option<MemorySnapshot>,
    sparkline: Sparkline,
}

struct Inner {
    config: EngineConfig,
    address: String,
    /// Written only by the sampler and discovery, one write at a time.
    writer: Mutex<Store>,
    /// Reads from the pool's other connections: chart queries never wait for a write.
    reader: Store,
    containers: RwLock<HashMap<String, Tracked>>,
    connection: RwLock<Option<docker::Connection>>,
    status: RwLock<EngineStatus>,
    overview: watch::Sender<Arc<Overview>>,
    cgroup: Option<CgroupReader>,
    dumps: Mutex<dumps::DumpStore>,
    /// Where dumps' bytes live (the dump folder or a bucket).
    dump_files: Arc<leakscope_blobs::DumpFiles>,
    /// One analysis at a time: they are memory-hungry.
    analysis_slot: tokio::sync::Semaphore,
    /// Objects looked up lately (each lookup is a pass over the dump), newest last.
    inspected: Mutex<std::collections::VecDeque<((String, u64), Arc<leakscope_heap::ObjectDetail>)>>,
    /// Object-id comparisons of snapshot pairs lately asked for (each is a pass over both), newest last.
    compared: Mutex<std::collections::VecDeque<((String, String), Arc<Option<Vec<leakscope_model::analysis::ObjectChange>>>)>>,
    /// Progress of the running analysis, by dump id (in memory only).
    analysis_progress: Mutex<HashMap<String, leakscope_heap::Progress>>,
    jobs: capture::Jobs,
    /// Latest leak verdict per container name, refreshed every minute.
    verdicts: RwLock<HashMap<String, leakscope_model::LeakStatus>>,
    auto: Mutex<autocapture::AutoState>,
    reports: reports::ReportStore,
    /// New OOM kills as the engine reports them (for notifications).
    oom_kills: tokio::sync::broadcast::Sender<leakscope_model::alerts::OomKill>,
    /// The OOM kills this server announced lately (container id, time), so that one
    /// seen again (a reconnect replays the engine's events) is announced once.
    announced_oom_kills: Mutex<std::collections::VecDeque<(String, i64)>>,
    /// Ticks sampled while another server holds the background lease (and stores
    /// them), the last half minute: written when this one takes over, so the
    /// history has no hole for the time the lease took to expire.
    standby_ticks: Mutex<std::collections::VecDeque<(i64, Vec<store::SampleRow>)>>,
    /// Containers of hosts that report through agents, by host name (a hub's view of its fleet).
    remote: RwLock<std::collections::BTreeMap<String, RemoteHost>>,
    /// Whether this server does the work that runs once among servers sharing a database.
    background: background::Background,
}

/// What an agent last said of its host's containers.
struct RemoteHost {
    containers: Vec<ContainerInfo>,
    connected: bool,
}

/// Where an analysis's own percentage sits on the dump's bar (unpacking is the first tenth).
fn bar_percent(analysis_percent: u8) -> u8 {
    (10 + u16::from(analysis_percent.min(100)) * 9 / 10) as u8
}

#[cfg(test)]
mod bar_tests {
    #[test]
    fn the_analysis_fills_the_last_nine_tenths_of_the_bar() {
        assert_eq!([0, 25, 55, 85, 100, 255].map(super::bar_percent), [10, 32, 59, 86, 100, 100]);
    }
}

/// Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// `series` steps beyond a year give one point anyway.
const MAX_STEP_SECONDS: u64 = 366 * 86_400;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the dashboard down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The dump folder, or the bucket the configuration names (which needs a runtime).
fn open_dump_files(config: &EngineConfig) -> Result<leakscope_blobs::DumpFiles, EngineError> {
    let folder = config.data_dir.join("dumps");
    match (&config.dump_store, tokio::runtime::Handle::try_current()) {
        (None, _) => Ok(leakscope_blobs::DumpFiles::folder(&folder)),
        (Some(url), Ok(runtime)) => Ok(leakscope_blobs::DumpFiles::open(Some(url), &folder, runtime)?),
        (Some(_), Err(_)) => Err(EngineError::Internal("a bucket dump store needs the async runtime".into())),
    }
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Opens the store under the data dir and starts discovery, sampling and
    /// maintenance in the background. Never fails because the engine is down.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let engine = Self::open(config)?;
        // The analyses' big columns go to unlinked files beside the dumps (on
        // their disk, not a tmpfs): memory the kernel can take back.
        leakscope_heap::column::spill_into(Some(engine.inner.config.data_dir.join("dumps")));
        dumps::remove_leftovers(&engine.inner.config.data_dir.join("dumps"));
        if !engine.inner.dump_files.is_bucket() {
            lock(&engine.inner.dumps).remove_unrecorded(&engine.inner.config.data_dir.join("dumps"));
        }
        sampler::spawn_all(engine.clone());
        // Analyses cut short by a stop are finished now.
        for id in lock(&engine.inner.dumps).unfinished()? {
            engine.spawn_analysis(id);
        }
        Ok(engine)
    }

    /// Opens everything without starting background work (for tests and CLI tools).
    pub fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| EngineError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        std::fs::create_dir_all(config.data_dir.join("dumps")).map_err(|source| EngineError::DataDir {
            path: config.data_dir.join("dumps").display().to_string(),
            source,
        })?;
        let db = config.data_dir.join("leakscope.db");
        let dump_files = Arc::new(open_dump_files(&config)?);
        let sql = match &config.database {
            Some(url) => leakscope_db::Db::open(url)?,
            None => leakscope_db::Db::open_sqlite(&db)?,
        };
        let store = Store::on(&sql)?;
        let dump_store = dumps::DumpStore::on(sql.clone(), dump_files.clone())?;
        let background = background::Background::open(&sql)?;
        let address = docker::resolve_address(config.docker_host.as_deref());
        let cgroup = match config.stats_source {
            StatsSource::Api => None,
            _ if !address.starts_with("unix://") => None, // a remote engine's cgroups are not ours
            _ => CgroupReader::detect(&config.cgroup_root),
        };
        let status = EngineStatus {
            address: address.clone(),
            connected: false,
            error: Some("connecting".into()),
            ..Default::default()
        };
        let (overview, _) = watch::channel(Arc::new(Overview {
            engine: status.clone(),
            sample_interval_ms: config.sample_interval.as_millis() as u64,
            ..Default::default()
        }));
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                address,
                writer: Mutex::new(store.clone()),
                reader: store,
                containers: RwLock::new(HashMap::new()),
                connection: RwLock::new(None),
                status: RwLock::new(status),
                overview,
                cgroup,
                dumps: Mutex::new(dump_store),
                dump_files,
                analysis_slot: tokio::sync::Semaphore::new(1),
                analysis_progress: Mutex::new(HashMap::new()),
                inspected: Mutex::new(std::collections::VecDeque::new()),
                compared: Mutex::new(std::collections::VecDeque::new()),
                jobs: capture::Jobs::on(&sql)?,
                verdicts: RwLock::new(HashMap::new()),
                auto: Mutex::new(autocapture::AutoState::default()),
                reports: reports::ReportStore::on(sql)?,
                oom_kills: tokio::sync::broadcast::channel(256).0,
                announced_oom_kills: Mutex::new(std::collections::VecDeque::new()),
                standby_ticks: Mutex::new(std::collections::VecDeque::new()),
                remote: RwLock::new(Default::default()),
                background,
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    pub fn status(&self) -> EngineStatus {
        read(&self.inner.status).clone()
    }

    /// The host's display name: the engine's own once it answered, else from its address.
    pub fn host_name(&self) -> String {
        if let Some(name) = &self.inner.config.host_name {
            return name.clone();
        }
        read(&self.inner.status).host_name.clone().unwrap_or_else(|| docker::host_of_address(&self.inner.address))
    }

    /// The Docker hosts this server watches (one engine reached directly, for now).
    pub fn hosts(&self) -> Vec<leakscope_model::HostInfo> {
        let status = self.status();
        vec![leakscope_model::HostInfo {
            name: self.host_name(),
            connected: status.connected,
            last_seen_ms: status.last_seen_ms,
            via: "direct".into(),
            address: status.address,
        }]
    }

    /// An agent's latest list of its host's containers (`None`: keep the last one, e.g. when it
    /// disconnects). A disconnected host's containers stay listed, marked `stale`. They join the
    /// overview at the next tick: the dashboard, the live stream, `/metrics` and notifications see them.
    pub fn set_remote_host(&self, host: &str, containers: Option<Vec<ContainerInfo>>, connected: bool) {
        let mut remote = write(&self.inner.remote);
        let entry = remote.entry(host.to_string()).or_insert_with(|| RemoteHost { containers: Vec::new(), connected });
        if let Some(containers) = containers {
            entry.containers = containers;
        }
        entry.connected = connected;
    }

    /// Whether `host` is reached through an agent (connected or not), not this engine.
    pub fn is_remote_host(&self, host: &str) -> bool {
        read(&self.inner.remote).contains_key(host)
    }

    /// A revoked agent's host leaves the overview.
    pub fn remove_remote_host(&self, host: &str) {
        write(&self.inner.remote).remove(host);
    }

    /// An OOM kill another host reported (an agent's, or an engine reached directly): its
    /// subscribers (notifications) hear of it as of this engine's own.
    pub fn announce_oom_kill(&self, kill: leakscope_model::alerts::OomKill) {
        let _ = self.inner.oom_kills.send(kill);
    }

    /// New OOM kills from now on, as the engine reports them.
    pub fn subscribe_oom_kills(&self) -> tokio::sync::broadcast::Receiver<leakscope_model::alerts::OomKill> {
        self.inner.oom_kills.subscribe()
    }

    /// OOM kills per container name over the kept events.
    pub async fn oom_kill_counts(&self) -> Result<std::collections::HashMap<String, u64>, EngineError> {
        self.blocking(|e| Ok(e.inner.reader.oom_kills_by_name()?)).await
    }

    /// The connected client, or a 503-worthy error saying where we tried and why it failed.
    pub fn docker(&self) -> Result<bollard::Docker, EngineError> {
        match &*read(&self.inner.connection) {
            Some(c) => Ok(c.docker.clone()),
            None => Err(self.unreachable()),
        }
    }

    fn unreachable(&self) -> EngineError {
        let status = self.status();
        EngineError::EngineUnreachable {
            address: status.address,
            reason: status.error.unwrap_or_else(|| "not connected".into()),
        }
    }

    /// The latest overview (pushed on every tick).
    pub fn overview(&self) -> Arc<Overview> {
        self.inner.overview.borrow().clone()
    }

    /// Live overviews, one per sampling tick or engine change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Overview>> {
        self.inner.overview.subscribe()
    }

    /// Every container, or 503 while the engine is unreachable.
    pub fn containers(&self) -> Result<Vec<ContainerInfo>, EngineError> {
        let overview = self.overview();
        if !overview.engine.connected {
            return Err(self.unreachable());
        }
        Ok(overview.containers.clone())
    }

    /// A verdict per compose service over its running replicas.
    pub fn services(&self) -> Result<Vec<leakscope_model::services::ServiceVerdict>, EngineError> {
        let overview = self.overview();
        if !overview.engine.connected {
            return Err(self.unreachable());
        }
        Ok(overview.services.clone())
    }

    /// One container by id, id prefix or name; from history when it is gone.
    pub async fn container(&self, id_or_name: &str) -> Result<ContainerDetail, EngineError> {
        let engine = self.status();
        if let Some(info) = self.find_live(id_or_name) {
            return Ok(ContainerDetail { info, engine, present: true });
        }
        let this = self.clone();
        let query = id_or_name.to_string();
        let found = tokio::task::spawn_blocking(move || this.inner.reader.find_container(&query))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        match found {
            Some((_, record)) => Ok(ContainerDetail {
                info: ContainerInfo {
                    id: record.id,
                    name: record.name,
                    host: self.host_name(),
                    image: record.image,
                    compose_project: record.compose_project,
                    compose_service: record.compose_service,
                    state: if engine.connected { "removed".into() } else { "unknown".into() },
                    limit_bytes: record.limit_bytes,
                    memory: None,
                    sparkline: Vec::new(),
                    leak: None,
                    auto_capture: None,
                },
                engine,
                present: false,
            }),
            None if !engine.connected => Err(self.unreachable()),
            None => Err(EngineError::UnknownContainer(id_or_name.to_string())),
        }
    }

    fn find_live(&self, id_or_name: &str) -> Option<ContainerInfo> {
        let overview = self.overview();
        let name = id_or_name.trim_start_matches('/');
        // This engine's own: other hosts' containers have their history on their agents.
        let local = self.host_name();
        let containers = || overview.containers.iter().filter(|c| c.host == local);
        let by_id = containers().find(|c| c.id == id_or_name);
        let by_name = || containers().find(|c| c.name == name);
        let by_prefix = || (id_or_name.len() >= 12).then(|| containers().find(|c| c.id.starts_with(id_or_name))).flatten();
        by_id.or_else(by_name).or_else(by_prefix).cloned()
    }

    /// Memory of a container (by name, so history spans re-creation) over a window.
    /// `step_seconds` picks the resolution; without it about 600 points are returned.
    /// Steps under a minute read raw samples, longer ones (or windows older than
    /// the raw retention) read minute rollups, and steps of an hour or more (or
    /// windows older than the minutes' retention) hourly ones.
    pub async fn series(
        &self,
        id_or_name: &str,
        from_ms: i64,
        to_ms: i64,
        step_seconds: Option<u64>,
    ) -> Result<MemorySeries, EngineError> {
        if from_ms >= to_ms {
            return Err(EngineError::BadRequest("'from' must be before 'to'".into()));
        }
        let name = self.container(id_or_name).await?.info.name;
        let interval_ms = self.inner.config.sample_interval.as_millis().max(1) as i64;
        let raw_start = now_ms() - self.inner.config.raw_retention.as_millis() as i64;
        let auto_step_ms = ((to_ms - from_ms) / 600).max(interval_ms);
        let mut step_ms = match step_seconds {
            Some(0) => return Err(EngineError::BadRequest("'step' must be at least 1 second".into())),
            // A step beyond a year is one point anyway; capped so the rounding below cannot overflow.
            Some(s) => s.min(MAX_STEP_SECONDS) as i64 * 1000,
            None => auto_step_ms,
        };
        // Refuse answers that would be millions of points.
        if (to_ms - from_ms) / step_ms > 100_000 {
            return Err(EngineError::BadRequest(
                "that step would return over 100 000 points; choose a larger step or a shorter range".into(),
            ));
        }
        let minutes_start = now_ms() - self.inner.config.rollup_retention.as_millis() as i64;
        let source = if step_ms < 60_000 && from_ms >= raw_start {
            SeriesSource::Raw
        } else if step_ms < 3_600_000 && from_ms >= minutes_start {
            step_ms = ((step_ms + 59_999) / 60_000) * 60_000;
            SeriesSource::Rollup1m
        } else {
            step_ms = ((step_ms + 3_599_999) / 3_600_000) * 3_600_000;
            SeriesSource::Rollup1h
        };
        let this = self.clone();
        let query_name = name.clone();
        let points = tokio::task::spawn_blocking(move || {
            this.inner.reader.series(&query_name, from_ms, to_ms, step_ms, source)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        Ok(MemorySeries {
            container: name,
            from_ms,
            to_ms,
            step_seconds: (step_ms / 1000) as u64,
            source: source.as_str().into(),
            points,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this)).await.map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// Stores a dump (plain or gzipped HPROF) streamed from `source`, then
    /// analyses it in the background.
    pub async fn import_dump(
        &self,
        source: impl std::io::Read + Send + 'static,
        meta: dumps::NewDump,
    ) -> Result<leakscope_model::dumps::DumpInfo, EngineError> {
        let (files, dir) = self.dump_target();
        let info = self
            .blocking(move |e| {
                // Only the final insert takes the store's lock; the copy does not.
                let staged = dumps::stage(&files, &dir, source, meta.expected_bytes)?;
                lock(&e.inner.dumps).commit(staged, meta, now_ms())
            })
            .await?;
        self.spawn_analysis(info.id.clone());
        Ok(info)
    }

    fn spawn_analysis(&self, id: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            let _slot = engine.inner.analysis_slot.acquire().await;
            let job_id = id.clone();
            let result = engine
                .blocking(move |e| {
                    let (stored, dir) = {
                        let store = lock(&e.inner.dumps);
                        store.set_state(&job_id, "running", None)?;
                        (store.stored(&job_id)?, e.inner.config.data_dir.join("dumps"))
                    };
                    // Unpacking the zstd file is the first tenth of the bar, the analysis the rest.
                    let set = |percent: u8, phase: &'static str| {
                        let mut all = lock(&e.inner.analysis_progress);
                        let entry = all.entry(job_id.clone()).or_insert(leakscope_heap::Progress { percent, phase });
                        // Parsing threads report out of order; the bar only moves forward.
                        if percent >= entry.percent {
                            *entry = leakscope_heap::Progress { percent, phase };
                        }
                    };
                    set(0, "unpacking the stored dump");
                    let unpacking = |done: u64, all: u64| set((done.min(all) * 10 / all.max(1)) as u8, "unpacking the stored dump");
                    let analysing = |p: leakscope_heap::Progress| {
                        let phase = if p.percent == 100 { "saving the result" } else { p.phase };
                        set(bar_percent(p.percent), phase)
                    };
                    let outcome = dumps::unpack_with_progress(&stored, &dir, &unpacking).and_then(|unpacked| {
                        Ok(leakscope_heap::analyze_file_with_progress(unpacked.path(), &leakscope_heap::Options::default(), &analysing))
                    });
                    lock(&e.inner.analysis_progress).remove(&job_id);
                    let outcome = outcome?;
                    let store = lock(&e.inner.dumps);
                    match outcome {
                        Ok(analysis) => store.save_analysis(&job_id, &analysis),
                        Err(err) => store.set_state(&job_id, "failed", Some(&err.to_string())),
                    }
                })
                .await;
            if let Err(e) = result {
                tracing::error!(dump = %id, error = %e, "analysis failed");
                let _ = lock(&engine.inner.dumps).set_state(&id, "failed", Some(&e.to_string()));
            }
        });
    }

    pub async fn dumps(&self, filter: leakscope_model::dumps::DumpFilter) -> Result<Vec<leakscope_model::dumps::DumpInfo>, EngineError> {
        let filter = filter.cleaned();
        let mut list = self.blocking(move |e| lock(&e.inner.dumps).list(&filter)).await?;
        list.iter_mut().for_each(|d| self.attach_progress(d));
        Ok(list)
    }

    /// A running analysis says how far it got.
    fn attach_progress(&self, info: &mut leakscope_model::dumps::DumpInfo) {
        if info.analysis_state == "running" {
            info.analysis_progress = lock(&self.inner.analysis_progress).get(&info.id).map(|p| {
                leakscope_model::dumps::AnalysisProgress { percent: p.percent, phase: p.phase.to_string() }
            });
        }
    }

    pub async fn dump(&self, id: &str) -> Result<leakscope_model::dumps::DumpInfo, EngineError> {
        if !dumps::valid_id(id) {
            return Err(EngineError::UnknownDump(id.to_string()));
        }
        let key = id.to_string();
        let mut info = self
            .blocking(move |e| lock(&e.inner.dumps).get(&key))
            .await?
            .ok_or_else(|| EngineError::UnknownDump(id.to_string()))?;
        self.attach_progress(&mut info);
        Ok(info)
    }

    /// The stored analysis, or why there is none yet.
    pub async fn dump_analysis(&self, id: &str) -> Result<leakscope_heap::Analysis, EngineError> {
        self.analysed_dump(id).await?;
        let key = id.to_string();
        self.blocking(move |e| lock(&e.inner.dumps).analysis(&key))
            .await?
            .ok_or_else(|| EngineError::Internal("analysis missing from the store".into()))
    }

    /// The dump, if its analysis succeeded; else why not (unknown, failed, not ready yet).
    async fn analysed_dump(&self, id: &str) -> Result<leakscope_model::dumps::DumpInfo, EngineError> {
        let info = self.dump(id).await?;
        match info.analysis_state.as_str() {
            "done" => Ok(info),
            "failed" => Err(EngineError::AnalysisFailed {
                id: id.to_string(),
                reason: info.analysis_error.unwrap_or_else(|| "unknown".into()),
            }),
            _ => Err(EngineError::AnalysisPending(id.to_string())),
        }
    }

    /// Any object of an analysed dump by its id (`0x…`): its dominators, biggest
    /// children and path from a GC root. A pass over the dump (about as long as
    /// its analysis), taking the analysis slot; the last 32 answers are kept.
    pub async fn dump_object(&self, id: &str, object_id: &str) -> Result<Arc<leakscope_heap::ObjectDetail>, EngineError> {
        let object = object_id
            .strip_prefix("0x")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| EngineError::BadRequest(format!("'{object_id}' is not an object id (expected 0x followed by hex digits)")))?;
        // The dump must exist and its analysis must have succeeded (a broken dump is not parsed twice).
        self.analysed_dump(id).await?;
        let key = (id.to_string(), object);
        if let Some(hit) = lock(&self.inner.inspected).iter().find(|(k, _)| *k == key).map(|(_, d)| d.clone()) {
            return Ok(hit);
        }
        let _slot = self.inner.analysis_slot.acquire().await;
        let job = key.clone();
        let detail = self
            .blocking(move |e| {
                let stored = lock(&e.inner.dumps).stored(&job.0)?;
                let unpacked = dumps::unpack(&stored, &e.inner.config.data_dir.join("dumps"))?;
                leakscope_heap::inspect_object_in_file(unpacked.path(), job.1, &leakscope_heap::Options::default())
                    .map_err(|err| EngineError::AnalysisFailed { id: job.0.clone(), reason: err.to_string() })
            })
            .await?
            .ok_or_else(|| EngineError::UnknownObject { dump: id.to_string(), object: object_id.to_string() })?;
        let detail = Arc::new(detail);
        let mut cache = lock(&self.inner.inspected);
        cache.push_back((key, detail.clone()));
        if cache.len() > 32 {
            cache.pop_front();
        }
        Ok(detail)
    }

    pub async fn dump_diff(&self, before: &str, after: &str) -> Result<leakscope_heap::HeapDiff, EngineError> {
        let a = self.dump_analysis(before).await?;
        let b = self.dump_analysis(after).await?;
        if a.summary.format != b.summary.format {
            return Err(EngineError::BadRequest(format!(
                "these dumps cannot be compared: one is {}, the other {}; compare two dumps of the same service",
                format_name(&a.summary.format),
                format_name(&b.summary.format)
            )));
        }
        let mut diff = leakscope_heap::diff::diff(&a, &b);
        let (first, second) = (self.dump(before).await?, self.dump(after).await?);
        if same_process_snapshots(&first, &second) {
            diff.objects = self.compare_objects(before, after).await?.as_ref().clone();
        }
        Ok(diff)
    }

    /// Objects added and freed between two snapshots, matched by id: a pass
    /// over both dumps (one graph in memory at a time), in the analysis slot;
    /// `None` when the ids do not match up; the last 8 answers are kept.
    async fn compare_objects(&self, before: &str, after: &str) -> Result<Arc<Option<Vec<leakscope_model::analysis::ObjectChange>>>, EngineError> {
        let key = (before.to_string(), after.to_string());
        if let Some(hit) = lock(&self.inner.compared).iter().find(|(k, _)| *k == key).map(|(_, c)| c.clone()) {
            return Ok(hit);
        }
        let _slot = self.inner.analysis_slot.acquire().await;
        let job = key.clone();
        let changes = self
            .blocking(move |e| {
                let dir = e.inner.config.data_dir.join("dumps");
                let (first, second) = {
                    let store = lock(&e.inner.dumps);
                    (store.stored(&job.0)?, store.stored(&job.1)?)
                };
                let first = dumps::unpack(&first, &dir)?;
                let second = dumps::unpack(&second, &dir)?;
                leakscope_heap::diff::compare_object_files(first.path(), second.path())
                    .map_err(|err| EngineError::Internal(format!("comparing the snapshots by object id: {err}")))
            })
            .await?;
        let changes = Arc::new(changes);
        let mut cache = lock(&self.inner.compared);
        cache.push_back((key, changes.clone()));
        if cache.len() > 8 {
            cache.pop_front();
        }
        Ok(changes)
    }

    /// The file name a dump is downloaded as.
    pub fn download_name(info: &leakscope_model::dumps::DumpInfo) -> String {
        format!("{}.{}", info.id, dumps::extension_of(&info.format))
    }

    pub async fn delete_dump(&self, id: &str) -> Result<(), EngineError> {
        self.dump(id).await?;
        let key = id.to_string();
        self.blocking(move |e| {
            // The record first: a file left by a failed removal is harmless, a record without its file is not.
            let stored = lock(&e.inner.dumps).delete(&key)?;
            if let Some(stored) = stored {
                if let Err(err) = stored.remove() {
                    tracing::warn!(dump = %key, error = %err, "the dump's record is gone but its file could not be removed");
                }
            }
            Ok(())
        })
        .await
    }

    /// The original dump, decompressed and checked against its SHA-256 as it
    /// is read (a damaged file ends the stream in an error).
    pub async fn dump_reader(&self, id: &str) -> Result<impl std::io::Read + Send + 'static, EngineError> {
        self.dump(id).await?;
        let key = id.to_string();
        self.blocking(move |e| {
            let stored = lock(&e.inner.dumps).stored(&key)?;
            Ok(stored.reader()?.0)
        })
        .await
    }

    /// Where a new dump goes: the store and the local dump folder (its
    /// scratch space for temporary files and the free-space check).
    pub(crate) fn dump_target(&self) -> (Arc<leakscope_blobs::DumpFiles>, std::path::PathBuf) {
        (self.inner.dump_files.clone(), self.inner.config.data_dir.join("dumps"))
    }

    /// Copies every dump's file from this engine's dump store into the one
    /// `url` names, checking each copy (blocking; `leakscope migrate`).
    pub async fn copy_dumps_to(&self, url: &str, progress: impl Fn(&str) + Send + 'static) -> Result<dumps::CopyReport, EngineError> {
        let target = Arc::new(leakscope_blobs::DumpFiles::open(Some(url), &self.inner.config.data_dir.join("dumps"), tokio::runtime::Handle::current())?);
        target.probe().await?;
        self.blocking(move |e| lock(&e.inner.dumps).copy_files_to(&target, &e.inner.config.data_dir.join("dumps"), &progress)).await
    }

    /// Where dumps are stored, in words (`folder …`, `s3://bucket/prefix`).
    pub fn dump_store(&self) -> String {
        self.inner.dump_files.describe()
    }

    /// Checks that the dump store answers (a bucket: exists, credentials list it).
    pub async fn probe_dump_store(&self) -> Result<(), EngineError> {
        Ok(self.inner.dump_files.probe().await?)
    }

    /// One sampling sweep now, outside the timer (benchmarks and tests).
    pub async fn sample_now(&self) {
        sampler::sample_once(self).await;
    }

    /// Lifecycle events of every container that had this name, in a window, oldest first.
    pub async fn events(&self, id_or_name: &str, from_ms: i64, to_ms: i64) -> Result<Vec<leakscope_model::ContainerEvent>, EngineError> {
        let name = self.container(id_or_name).await?.info.name;
        self.blocking(move |e| Ok(e.inner.reader.events(&name, from_ms, to_ms)?)).await
    }

    /// The container's log lines from `from_ms` to `to_ms` (at most `cap`), through the engine's logs API.
    pub async fn logs(&self, id_or_name: &str, from_ms: i64, to_ms: i64, cap: usize) -> Result<leakscope_model::LogExcerpt, EngineError> {
        use futures::StreamExt;
        let detail = self.container(id_or_name).await?;
        if !detail.present {
            return Err(EngineError::BadRequest(format!("{} no longer exists, and the engine keeps logs only while it does", detail.info.name)));
        }
        let docker = self.docker()?;
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since((from_ms / 1000) as i32)
            .until((to_ms / 1000 + 1) as i32)
            .build();
        let mut stream = docker.logs(&detail.info.id, Some(options));
        let mut excerpt = leakscope_model::LogExcerpt { container: detail.info.name.clone(), from_ms, to_ms, ..Default::default() };
        while let Some(item) = stream.next().await {
            let item = match item {
                Ok(item) => item,
                // Removed (or being removed) between our lookup and the engine's answer.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. }) => {
                    return Err(EngineError::BadRequest(format!(
                        "{} is being removed or no longer exists, and the engine keeps logs only while it does",
                        detail.info.name
                    )))
                }
                Err(e) => return Err(EngineError::Internal(format!("reading logs: {e}"))),
            };
            let (stream_name, bytes) = match item {
                bollard::container::LogOutput::StdOut { message } => ("stdout", message),
                bollard::container::LogOutput::StdErr { message } => ("stderr", message),
                bollard::container::LogOutput::Console { message } => ("stdout", message),
                bollard::container::LogOutput::StdIn { .. } => continue,
            };
            for line in String::from_utf8_lossy(&bytes).lines() {
                if excerpt.lines.len() >= cap {
                    excerpt.truncated = true;
                    break;
                }
                let (timestamp, text) = line.split_once(' ').unwrap_or(("", line));
                excerpt.lines.push(leakscope_model::LogLine { timestamp: timestamp.into(), stream: stream_name.into(), text: text.into() });
            }
            if excerpt.truncated {
                break;
            }
        }
        Ok(excerpt)
    }

    /// How many containers are tracked, running or not.
    pub fn tracked_count(&self) -> usize {
        read(&self.inner.containers).len()
    }

    fn publish(&self, updated_ms: i64) {
        let host = self.host_name();
        let status = {
            let mut status = write(&self.inner.status);
            if status.connected {
                status.last_seen_ms = Some(updated_ms);
            }
            status.clone()
        };
        let containers = read(&self.inner.containers);
        let mut list: Vec<ContainerInfo> = containers
            .values()
            .map(|t| ContainerInfo {
                id: t.record.id.clone(),
                name: t.record.name.clone(),
                host: host.clone(),
                image: t.record.image.clone(),
                compose_project: t.record.compose_project.clone(),
                compose_service: t.record.compose_service.clone(),
                state: t.record.state.clone(),
                limit_bytes: t.record.limit_bytes,
                memory: if t.record.state == "running" { t.latest.clone() } else { None },
                sparkline: t.sparkline.values(updated_ms),
                leak: read(&self.inner.verdicts).get(&t.record.name).cloned(),
                auto_capture: self.auto_capture_text(t.record.capture_label.as_deref()),
            })
            .collect();
        drop(containers);
        for (name, remote) in read(&self.inner.remote).iter() {
            list.extend(remote.containers.iter().cloned().map(|mut c| {
                c.host = name.clone();
                if !remote.connected {
                    c.state = "stale".into();
                }
                c
            }));
        }
        list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.host.cmp(&b.host)));
        self.inner.overview.send_replace(Arc::new(Overview {
            engine: status,
            services: leakscope_model::services::service_verdicts(&list),
            containers: list,
            updated_ms,
            sample_interval_ms: self.inner.config.sample_interval.as_millis() as u64,
        }));
    }
}

fn format_name(format: &str) -> &'static str {
    leakscope_heap::Format::from_key(format).unwrap_or(leakscope_heap::Format::Hprof).description()
}

/// Two V8 snapshots whose object ids may name the same objects: V8 keeps ids
/// for the life of one inspector session or of a process writing its own
/// snapshots (`v8.writeHeapSnapshot()`), so uploads qualify. A capture opens
/// a new inspector session, and closing one resets V8's ids, so two captures
/// never do. Python snapshots name objects by address, stable while the
/// object lives: two captures of one process (same container, same pid)
/// qualify. The comparison itself still refuses ids that change class.
fn same_process_snapshots(before: &leakscope_model::dumps::DumpInfo, after: &leakscope_model::dumps::DumpInfo) -> bool {
    match (before.format.as_str(), after.format.as_str()) {
        ("v8", "v8") => before.trigger == "upload" && after.trigger == "upload",
        ("python", "python") => before.container_id.is_some() && before.container_id == after.container_id && before.pid.is_some() && before.pid == after.pid,
        _ => false,
    }
}
