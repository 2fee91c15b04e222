//! Heap dump capture from a running container, with no tools required in the image.
//!
//! A capture is a job: put our static helper into the container (when it can
//! run there), ask every runtime's recipe which of the container's processes it
//! can dump, choose one, let its recipe produce the dump as a byte stream into
//! the store's staging file, store it, and clean up both sides. This module
//! knows no runtime: `java.rs` and `node.rs` are the recipes, behind [`Recipe`].
//!
//! Every exec is an argv array; nothing from a request is ever put into a shell
//! string. The only paths used inside the container are our own fixed names.

mod core_dump;
mod go;
mod java;
mod memory_map;
mod node;
mod python;
mod shared;
mod sidecar;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use leakscope_model::capture::{CaptureJob, RuntimeProcess};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::channel::{channel_reader, Chunk};
use crate::dumps::{self, NewDump};
use crate::{lock, now_ms, Engine, EngineError};

/// Where our files live inside the container: /tmp is the one place every
/// image lets any user write (HotSpot itself keeps its attach socket there).
const CONTAINER_DIR: &str = "/tmp";
/// Jobs kept for `GET /api/v1/jobs/<id>` after they end.
const KEEP_JOBS: usize = 200;
/// A dump may take long to write and copy; requests on this client may too.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Keep this much free in the dump folder beyond the dump's expected size.
const FREE_MARGIN: u64 = 64 << 20;

#[derive(Default)]
pub(crate) struct Jobs {
    all: Mutex<Vec<CaptureJob>>,
    /// Container id -> running job id, so a second click joins the first.
    running: Mutex<HashMap<String, String>>,
    /// With a database shared by several servers: the jobs every one of them sees.
    shared: Option<shared::SharedJobs>,
    /// Running job id -> where its updates go to be shared.
    sharing: Mutex<HashMap<String, tokio::sync::watch::Sender<CaptureJob>>>,
}

impl Jobs {
    pub(crate) fn on(db: &leakscope_db::Db) -> Result<Jobs, EngineError> {
        Ok(Jobs { shared: shared::SharedJobs::open(db)?, ..Default::default() })
    }
}

/// What the caller asked for.
#[derive(Clone, Debug)]
pub struct CaptureRequest {
    pub container: String,
    pub pid: Option<u32>,
    /// The user accepted the risk of a capture in a container near its memory limit.
    pub confirmed: bool,
    /// `manual` (dashboard, API) or `auto`.
    pub trigger: String,
    pub requested_by: Option<String>,
    /// `heap-dump`, `memory-map` …; by default the richest the process offers.
    pub kind: Option<String>,
}

/// What a failed step says to the user; becomes the job's `error`.
type StepResult<T> = Result<T, String>;

impl Engine {
    /// Starts a capture job (or joins the one already running for this container).
    pub async fn start_capture(&self, request: CaptureRequest) -> Result<String, EngineError> {
        let docker = self.docker()?.with_timeout(CAPTURE_TIMEOUT);
        let inspect = match docker.inspect_container(&request.container, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(EngineError::UnknownContainer(request.container.clone())),
            Err(e) => {
                return Err(EngineError::Internal(format!(
                    "inspecting {}: {e}",
                    request.container
                )))
            }
        };
        let id = inspect.id.clone().unwrap_or_default();
        let name = inspect
            .name
            .as_deref()
            .unwrap_or(&id)
            .trim_start_matches('/')
            .to_string();
        if !inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false)
        {
            return Err(EngineError::BadRequest(format!(
                "container {name} is not running; a heap dump needs a live process"
            )));
        }
        let jobs = &self.inner.jobs;
        // Another server sharing the database may be capturing it: the click joins that job.
        // Not one of this server's own: their state here is current, the table's may lag a second.
        if let Some(shared) = &jobs.shared {
            if !lock(&jobs.running).contains_key(&id) {
                if let Some(elsewhere) = shared.running_for(&id).await {
                    if self.capture_job(&elsewhere).is_none() {
                        return Ok(elsewhere);
                    }
                }
            }
        }
        let job_id = {
            let mut running = lock(&jobs.running);
            if let Some(existing) = running.get(&id) {
                return Ok(existing.clone());
            }
            let job_id = dumps::new_id()?;
            running.insert(id.clone(), job_id.clone());
            let mut all = lock(&jobs.all);
            all.push(CaptureJob::starting(job_id.clone(), name.clone(), request.pid, now_ms()));
            if let (Some(shared), Some(job)) = (&jobs.shared, all.last()) {
                lock(&jobs.sharing).insert(job_id.clone(), shared.follow(&id, job));
            }
            let excess = all.len().saturating_sub(KEEP_JOBS);
            all.drain(..excess);
            job_id
        };
        let engine = self.clone();
        let job = job_id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut capture = Capture {
                engine: engine.clone(),
                docker,
                job: job.clone(),
                inspect,
                helper: None,
                helper_error: None,
                java_client: None,
                top: None,
                placed: Vec::new(),
                kind: request.kind.clone(),
                found_richer: false,
                sidecar_may_switch_user: false,
            };
            let outcome = capture.run(&request, started).await;
            capture.clean_up().await;
            engine.update_job(&job, |j| {
                j.finished_ms = Some(now_ms());
                match outcome {
                    Ok(dump_id) => {
                        j.state = "done".into();
                        j.stage = "done".into();
                        j.dump_id = Some(dump_id);
                    }
                    Err(message) => {
                        j.state = "failed".into();
                        j.error = Some(message);
                    }
                }
            });
            lock(&engine.inner.jobs.running).remove(&id);
            lock(&engine.inner.jobs.sharing).remove(&job);
        });
        Ok(job_id)
    }

    /// A job this server runs or ran, else one another server sharing the database runs.
    pub async fn capture_job_anywhere(&self, job_id: &str) -> Option<CaptureJob> {
        if let Some(job) = self.capture_job(job_id) {
            return Some(job);
        }
        self.inner.jobs.shared.as_ref()?.get(job_id).await
    }

    pub fn capture_job(&self, job_id: &str) -> Option<CaptureJob> {
        lock(&self.inner.jobs.all)
            .iter()
            .find(|j| j.job_id == job_id)
            .cloned()
    }

    /// The most recent job for a container (by name), running or not.
    pub fn latest_capture(&self, container_name: &str) -> Option<CaptureJob> {
        lock(&self.inner.jobs.all)
            .iter()
            .rev()
            .find(|j| j.container == container_name)
            .cloned()
    }

    fn update_job(&self, job_id: &str, change: impl FnOnce(&mut CaptureJob)) {
        if let Some(job) = lock(&self.inner.jobs.all)
            .iter_mut()
            .find(|j| j.job_id == job_id)
        {
            change(job);
            if let Some(sharing) = lock(&self.inner.jobs.sharing).get(job_id) {
                sharing.send_replace(job.clone());
            }
        }
    }
}

/// A helper that runs inside the container: our static binary, or (a
/// recipe's fallback) a client run by the container's own runtime.
#[derive(Clone)]
struct Helper {
    prefix: Vec<String>,
    /// `agent`, `java-attach` …: how a dump is taken with it.
    recipe: &'static str,
}

/// One runtime's way to find its processes in a container and dump one.
/// Adding a runtime means adding a module with one of these and listing it in [`recipes`].
#[async_trait::async_trait]
trait Recipe: Send + Sync {
    /// What it captures (`heap-dump`, `memory-map` …): what [`RuntimeProcess::kinds`] lists.
    fn kind(&self) -> &'static str;
    /// The container's processes of this runtime (empty when none).
    async fn find(&self, capture: &mut Capture) -> StepResult<Vec<RuntimeProcess>>;
    /// Takes the dump and streams it into the store's staging file.
    async fn produce(
        &self,
        capture: &mut Capture,
        process: &RuntimeProcess,
    ) -> StepResult<Produced>;
    /// True when a dump may need much more memory than the process holds (a
    /// V8 snapshot can need about twice the heap): the user must confirm near the limit.
    fn needs_headroom(&self) -> bool {
        false
    }
    /// True for kinds any process offers, whatever its runtime (a memory map, a core dump).
    fn offered_by_every_process(&self) -> bool {
        false
    }
}

/// Richest first: a process found by several recipes offers each of their
/// kinds, and the first is its default. Every process offers a memory map and
/// (only when asked for: it stops the process) a core dump.
fn recipes() -> [&'static dyn Recipe; 6] {
    [&java::Java, &node::Node, &python::Python, &go::Go, &memory_map::MemoryMap, &core_dump::CoreDump]
}

/// True for a kind every process offers (`memory-map`, `core`).
fn offered_by_every_process(kind: &str) -> bool {
    recipes().iter().any(|r| r.kind() == kind && r.offered_by_every_process())
}

/// The kinds a capture request may name, richest first.
pub fn kinds() -> Vec<&'static str> {
    recipes().iter().map(|r| r.kind()).collect()
}

/// The error lines of the helper or the script, without status lines.
pub(super) fn said(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("leakscope: "))
        .map(|l| l.strip_prefix("leakscope-error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}


/// What a status line changes in the job.
pub(super) type JobChange = Box<dyn FnOnce(&mut CaptureJob) + Send>;

/// A helper's status line, `leakscope: <word> <values>`, as (word, values).
pub(super) fn status_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("leakscope: ")?;
    Some(rest.split_once(' ').unwrap_or((rest, "")))
}

/// A dump in the staging area, with what the recipe learnt on the way.
struct Produced {
    staged: dumps::Staged,
    /// `java 17.0.15`, `node v20.20.2`.
    runtime: String,
    pause_ms: Option<u64>,
}

/// Above this share of its memory limit, a capture that needs headroom asks first.
const CONFIRM_ABOVE: f64 = 0.6;

type ExecStream = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
            + Send,
    >,
>;
type InputWriter = tokio::task::JoinHandle<std::io::Result<()>>;

/// Output of a finished exec.
struct ExecOutput {
    exit_code: i64,
    stdout: String,
    stderr: String,
}

struct Capture {
    engine: Engine,
    docker: Docker,
    job: String,
    inspect: ContainerInspectResponse,
    /// Our static helper, once it runs in the container.
    helper: Option<Helper>,
    /// Why it does not, in words, for the recipes' fallbacks to quote.
    helper_error: Option<String>,
    /// The Java recipe's fallback client (our jar on the container's java), once it runs.
    java_client: Option<Helper>,
    /// The container's process commands as the engine lists them (`docker top`), once asked.
    top: Option<Vec<String>>,
    /// Files we put into the container (helpers, dumps), removed at the end.
    placed: Vec<String>,
    /// What the request asked for, if it named a kind.
    kind: Option<String>,
    /// A recipe before the memory map found a process (so listing every
    /// process need not start a helper container).
    found_richer: bool,
    /// The helper container also gets CAP_SETUID and CAP_SETGID, to hand a
    /// file to the target as its own user (a Python 3.14 snapshot).
    sidecar_may_switch_user: bool,
}

impl Capture {
    fn id(&self) -> &str {
        self.inspect.id.as_deref().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string()
    }

    fn stage(&self, stage: &str) {
        self.engine
            .update_job(&self.job, |j| j.stage = stage.into());
    }

    /// True when /tmp is a tmpfs or the root filesystem is read-only: the
    /// archive API (like `docker cp`) sees neither, so files go through exec.
    fn archive_api_unusable(&self) -> bool {
        let host = self.inspect.host_config.as_ref();
        let read_only = host.and_then(|h| h.readonly_rootfs).unwrap_or(false);
        let tmpfs_flag = host
            .and_then(|h| h.tmpfs.as_ref())
            .is_some_and(|t| t.contains_key(CONTAINER_DIR));
        let tmp_mount = self.inspect.mounts.as_ref().is_some_and(|m| {
            m.iter()
                .any(|m| m.destination.as_deref() == Some(CONTAINER_DIR))
        });
        read_only || tmpfs_flag || tmp_mount
    }

    async fn run(&mut self, request: &CaptureRequest, started: Instant) -> StepResult<String> {
        self.stage("locating");
        if let Err(why) = self.install_native_agent().await {
            tracing::info!(job = %self.job, %why, "the static helper does not run in this container");
            self.helper_error = Some(why);
        }
        if let Some(kind) = request.kind.as_deref().filter(|k| !kinds().contains(k)) {
            return Err(format!("unknown kind of capture '{kind}'; one of: {}", kinds().join(", ")));
        }
        let mut processes: Vec<RuntimeProcess> = Vec::new();
        let mut trouble = Vec::new();
        for recipe in recipes() {
            match recipe.find(self).await {
                Ok(found) => merge_found(&mut processes, recipe.kind(), found),
                Err(why) => trouble.push(why),
            }
            self.found_richer = !processes.is_empty();
        }
        // Every process offers a memory map and a core (through a helper container
        // when ours cannot run inside), even where listing them all was skipped.
        for recipe in recipes().iter().filter(|r| r.offered_by_every_process()) {
            for process in &mut processes {
                if !process.kinds.iter().any(|k| k == recipe.kind()) {
                    process.kinds.push(recipe.kind().into());
                    process.capturable = true;
                }
            }
        }
        if let Some(why) = self.helper_error.clone() {
            // Without our helper only the engine's process list was seen.
            trouble.push(format!("Leakscope's helper could not look inside: {why}"));
        }
        // Every process and what it offers, for the page to show (and to choose from on failure).
        self.engine.update_job(&self.job, |j| j.processes = processes.clone());
        let process = choose_process(&processes, request.pid, request.kind.as_deref(), &trouble)?;
        let kind = match request.kind.clone() {
            Some(kind) if process.kinds.contains(&kind) => kind,
            Some(kind) => {
                return Err(format!(
                    "{} pid {} offers no {kind}{}",
                    process.runtime,
                    process.pid,
                    offered(&process)
                ))
            }
            // A runtime's process its recipe cannot capture: say why, rather than
            // quietly taking a memory map when a heap dump was asked for.
            None => match process.kinds.first() {
                Some(kind) if kind == "memory-map" && recognised(&process) => {
                    return Err(format!(
                        "{}; a memory map of it can be taken instead (its button in the process list, or {{\"pid\": {}, \"kind\": \"memory-map\"}} in the API)",
                        process.note.clone().unwrap_or_else(|| format!("{} pid {} cannot be dumped", process.runtime, process.pid)),
                        process.pid
                    ))
                }
                Some(kind) => kind.clone(),
                None => return Err(process.note.clone().unwrap_or_else(|| format!("pid {} cannot be captured", process.pid))),
            },
        };
        let recipe = recipes()
            .into_iter()
            .find(|r| r.kind() == kind)
            .ok_or("no recipe for this kind")?;
        self.engine.update_job(&self.job, |j| {
            j.pid = Some(process.pid);
            j.runtime = Some(process.runtime.clone());
            j.kind = Some(kind.clone());
        });
        if recipe.needs_headroom() && !request.confirmed {
            self.check_headroom(&process)?;
        }
        self.check_free_space()?;
        // What the container held when asked: a heap dump's share of it tells whether the leak is in the heap.
        let working_set_bytes = self.engine.find_live(self.id()).and_then(|c| c.memory).map(|m| m.working_set_bytes);

        self.stage("dumping");
        let produced = recipe.produce(self, &process).await?;

        self.stage("storing");
        let labels = self
            .inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let extension = dumps::extension_of(produced.staged.format);
        let meta = NewDump {
            file_name: format!(
                "{}-{}.{extension}",
                self.name(),
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ),
            service: labels.get("com.docker.compose.service").cloned(),
            container_name: Some(self.name()),
            container_id: Some(self.id().to_string()),
            image: self.inspect.config.as_ref().and_then(|c| c.image.clone()),
            trigger: request.trigger.clone(),
            expected_bytes: None,
            pid: Some(process.pid),
            runtime: Some(produced.runtime),
            capture_ms: Some(started.elapsed().as_millis() as u64),
            requested_by: request.requested_by.clone(),
            pause_ms: produced.pause_ms,
            working_set_bytes,
            host: Some(self.engine.host_name()),
        };
        let staged = produced.staged;
        let info = self
            .engine
            .blocking(move |e| lock(&e.inner.dumps).commit(staged, meta, now_ms()))
            .await
            .map_err(|e| e.to_string())?;
        self.engine.spawn_analysis(info.id.clone());
        Ok(info.id)
    }

    /// Refuses (until confirmed) a dump that may push the container over its limit.
    fn check_headroom(&self, process: &RuntimeProcess) -> StepResult<()> {
        let memory = self.engine.find_live(self.id()).and_then(|c| c.memory);
        let Some((used, limit)) = memory.and_then(|m| Some((m.working_set_bytes, m.limit_bytes?)))
        else {
            return Ok(());
        };
        let share = used as f64 / limit.max(1) as f64;
        if share > CONFIRM_ABOVE {
            return Err(format!(
                "this container uses {:.0} % of its memory limit ({} of {} MiB); a {} heap snapshot pauses the process \
                 and can need about twice its heap, so the container may be OOM-killed. Confirm to capture anyway \
                 (the form's checkbox, or {{\"pid\": {}, \"confirm\": true}} in the API)",
                share * 100.0,
                used >> 20,
                limit >> 20,
                process.runtime,
                process.pid
            ));
        }
        Ok(())
    }

    fn check_free_space(&self) -> StepResult<()> {
        let dir = self.engine.inner.config.data_dir.join("dumps");
        // A heap dump is at most about the size of the process's memory.
        let need = self
            .engine
            .find_live(self.id())
            .and_then(|c| c.memory)
            .map(|m| m.usage_bytes);
        if let (Some(need), Some(free)) = (need, dumps::free_bytes(&dir)) {
            if need + FREE_MARGIN > free {
                return Err(format!(
                    "not enough disk space for the dump: the container uses {} MiB, {} has {} MiB free",
                    need >> 20,
                    dir.display(),
                    free >> 20
                ));
            }
        }
        Ok(())
    }

    /// Argv for one command of our helper (or the Java fallback client).
    fn helper_command(&self, args: &[&str]) -> Vec<String> {
        let helper = self.helper.as_ref().or(self.java_client.as_ref());
        let mut argv = helper.map(|h| h.prefix.clone()).unwrap_or_default();
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    async fn install_native_agent(&mut self) -> StepResult<()> {
        let Some(local) = self.engine.inner.config.agent_path.clone() else {
            return Err(
                "Leakscope's capture helper was not built (run the build, or pass --agent)".into(),
            );
        };
        let binary = tokio::fs::read(&local)
            .await
            .map_err(|e| format!("cannot read the capture helper {}: {e}", local.display()))?;
        let file_name = format!(".leakscope-agent-{}", self.job);
        let path = format!("{CONTAINER_DIR}/{file_name}");
        // Remembered before copying so clean-up removes it whatever happens next.
        self.placed.push(path.clone());
        if !self.archive_api_unusable() {
            let tar = single_file_tar(&file_name, &binary, 0o755)
                .map_err(|e| format!("packing the helper: {e}"))?;
            let options = UploadToContainerOptionsBuilder::default()
                .path(CONTAINER_DIR)
                .build();
            if let Err(e) = self
                .docker
                .upload_to_container(self.id(), Some(options), bollard::body_full(tar.into()))
                .await
            {
                tracing::info!(job = %self.job, error = %e, "archive upload refused; copying through exec");
            }
        }
        let helper = Helper {
            prefix: vec![path.clone()],
            recipe: "agent",
        };
        if self.helper_runs(&helper).await? {
            self.helper = Some(helper);
            return Ok(());
        }
        self.copy_in(&path, &binary, true).await?;
        let check = self
            .exec(vec![path.clone(), "version".into()], "0:0")
            .await?;
        if check.exit_code == 0 {
            self.helper = Some(helper);
            return Ok(());
        }
        if check.exit_code == 126 || check.stderr.contains("permission denied") {
            return Err(format!(
                "{CONTAINER_DIR} in this container is mounted noexec (Docker's default for --tmpfs), so Leakscope's \
                 helper cannot run there"
            ));
        }
        Err(format!(
            "the capture helper does not run in this container (exit {}): {}",
            check.exit_code,
            check.stderr.trim()
        ))
    }

    async fn helper_runs(&self, helper: &Helper) -> StepResult<bool> {
        let mut argv = helper.prefix.clone();
        argv.push("version".into());
        Ok(self
            .exec(argv, "0:0")
            .await
            .map(|o| o.exit_code == 0)
            .unwrap_or(false))
    }

    /// Streams `contents` into a new file through exec stdin, with the
    /// container's own sh and cat (the archive API cannot write to tmpfs).
    async fn copy_in(&self, path: &str, contents: &[u8], executable: bool) -> StepResult<()> {
        let script = if executable {
            "cat > \"$0\" && chmod 755 \"$0\""
        } else {
            "cat > \"$0\""
        };
        let copied = self
            .exec_with_input(
                vec!["sh".into(), "-c".into(), script.into(), path.to_string()],
                "0:0",
                contents,
            )
            .await;
        match copied {
            Ok(o) if o.exit_code == 0 => Ok(()),
            Ok(o) => Err(format!(
                "cannot copy the capture helper into {CONTAINER_DIR} (exit {}): {}; the container needs a writable {CONTAINER_DIR} (the JVM keeps its attach socket there too)",
                o.exit_code,
                o.stderr.trim()
            )),
            Err(e) => Err(format!("cannot copy the capture helper into the container: {e}")),
        }
    }

    /// Streams the dump out of the container into the store's staging file.
    async fn copy_out(&self, path: &str, expected: Option<u64>) -> StepResult<dumps::Staged> {
        let (files, dir) = self.engine.dump_target();
        let (tx, reader) = channel_reader();
        let via_archive = !self.archive_api_unusable();
        let stager = tokio::task::spawn_blocking(move || -> Result<dumps::Staged, EngineError> {
            if via_archive {
                let mut archive = tar::Archive::new(reader);
                let mut entries = archive
                    .entries()
                    .map_err(|e| EngineError::Internal(format!("reading the archive: {e}")))?;
                let entry = entries
                    .next()
                    .ok_or_else(|| {
                        EngineError::Internal("the archive from the engine was empty".into())
                    })?
                    .map_err(|e| EngineError::Internal(format!("reading the archive: {e}")))?;
                dumps::stage(&files, &dir, entry, expected)
            } else {
                dumps::stage(&files, &dir, reader, expected)
            }
        });
        let copied = if via_archive {
            self.stream_archive(path, tx).await
        } else {
            self.stream_exec(path, tx).await
        };
        let staged = stager.await.map_err(|e| format!("storing the dump: {e}"))?;
        // A copy error explains a staging error (a truncated stream), so report it first.
        copied?;
        staged.map_err(|e| format!("storing the dump: {e}"))
    }

    async fn stream_archive(&self, path: &str, tx: mpsc::Sender<Chunk>) -> StepResult<()> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self
            .docker
            .download_from_container(self.id(), Some(options));
        let mut progress = Progress::new(&self.engine, &self.job);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    progress.add(bytes.len());
                    if tx.send(Ok(bytes)).await.is_err() {
                        break; // the stager stopped (and will say why)
                    }
                }
                Err(e) => {
                    let message = format!("copying the dump out of the container failed: {e}");
                    let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
                    return Err(message);
                }
            }
        }
        progress.finish();
        Ok(())
    }

    async fn stream_exec(&self, path: &str, tx: mpsc::Sender<Chunk>) -> StepResult<()> {
        let output = self
            .stream_command(
                self.helper_command(&["cat", path]),
                "0:0",
                &[],
                tx,
                &mut |_| {},
            )
            .await?;
        if output.exit_code != 0 {
            return Err(format!(
                "copying the dump out of the container failed (exit {}): {}",
                output.exit_code,
                output.stderr.trim()
            ));
        }
        Ok(())
    }

    /// Runs an argv array in the container as `user` (feeding `input` to its
    /// stdin when not empty) and sends its stdout into `tx` as it arrives,
    /// counting bytes for the job; `on_line` sees each stderr line. A non-zero
    /// exit also ends `tx` with an error, so the stager keeps nothing.
    async fn stream_command(
        &self,
        cmd: Vec<String>,
        user: &str,
        input: &[u8],
        tx: mpsc::Sender<Chunk>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> StepResult<ExecOutput> {
        let what = cmd.first().cloned().unwrap_or_default();
        let (exec_id, mut output, writer) = self.start_exec(cmd, user, input).await?;
        let (stderr, failure) = self.pump(&what, &mut output, &tx, on_line).await;
        if let Some(writer) = writer {
            writer.abort();
        }

        if let Some(message) = failure {
            let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
            return Err(message);
        }
        let exit_code = self
            .docker
            .inspect_exec(&exec_id)
            .await
            .ok()
            .and_then(|i| i.exit_code)
            .unwrap_or(-1);
        if exit_code != 0 {
            let _ = tx
                .send(Err(std::io::Error::other(format!(
                    "{what} exited with {exit_code}"
                ))))
                .await;
        }
        Ok(ExecOutput {
            exit_code,
            stdout: String::new(),
            stderr,
        })
    }

    /// Sends a command's stdout into `tx` as it arrives, counting bytes for the
    /// job; `on_line` sees each stderr line. Returns stderr (bounded) and why the
    /// stream broke, if it did.
    async fn pump(
        &self,
        what: &str,
        output: &mut ExecStream,
        tx: &mpsc::Sender<Chunk>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> (String, Option<String>) {
        const KEEP: usize = 1 << 20;
        let mut progress = Progress::new(&self.engine, &self.job);
        let (mut stderr, mut line) = (String::new(), Vec::new());
        let mut failure = None;
        while let Some(item) = output.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdOut { message }) => {
                    progress.add(message.len());
                    if tx.send(Ok(message)).await.is_err() {
                        break; // the stager stopped (and will say why)
                    }
                }
                Ok(other) => {
                    for byte in other.into_bytes() {
                        if byte != b'\n' {
                            line.push(byte);
                            continue;
                        }
                        let text = String::from_utf8_lossy(&line).into_owned();
                        line.clear();
                        on_line(&text);
                        if stderr.len() < KEEP {
                            stderr.push_str(&text);
                            stderr.push('\n');
                        }
                    }
                }
                Err(e) => {
                    failure = Some(engine_failure(&format!("streaming from {what}"), &e));
                    break;
                }
            }
        }
        progress.finish();
        if !line.is_empty() {
            stderr.push_str(&String::from_utf8_lossy(&line));
        }
        (stderr, failure)
    }

    /// A staging task fed by the returned sender: the dump goes to disk as it arrives.
    fn stager(
        &self,
    ) -> (
        mpsc::Sender<Chunk>,
        tokio::task::JoinHandle<Result<dumps::Staged, EngineError>>,
    ) {
        let (files, dir) = self.engine.dump_target();
        let (tx, reader) = channel_reader();
        (
            tx,
            tokio::task::spawn_blocking(move || dumps::stage(&files, &dir, reader, None)),
        )
    }

    /// Removes what we placed (helpers, dumps) from the container, whatever happened.
    async fn clean_up(&self) {
        let files = self.placed.clone();
        if files.is_empty() {
            return;
        }
        let mut command = vec!["rm".to_string(), "-f".to_string()];
        command.extend(files.iter().cloned());
        let removed = self
            .exec(command, "0:0")
            .await
            .map(|o| o.exit_code == 0)
            .unwrap_or(false);
        if let (false, Some(helper)) = (removed, self.helper.as_ref().or(self.java_client.as_ref()))
        {
            // Images without rm: the helper removes the files (itself included).
            let mut command = helper.prefix.clone();
            command.push("rm".into());
            command.extend(files.iter().cloned());
            let _ = self.exec(command, "0:0").await;
        }
    }

    /// Creates and starts an attached exec; feeds `input` to its stdin (when
    /// not empty) from a task, while the caller reads the output: a command
    /// that fails early stops reading its input, and its exit code and stderr say why.
    async fn start_exec(
        &self,
        cmd: Vec<String>,
        user: &str,
        input: &[u8],
    ) -> StepResult<(String, ExecStream, Option<InputWriter>)> {
        let what = cmd.first().cloned().unwrap_or_default();
        let exec = self
            .docker
            .create_exec(self.id(), exec_options(cmd, user, !input.is_empty()))
            .await
            .map_err(|e| engine_failure(&format!("running {what}"), &e))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| engine_failure(&format!("running {what}"), &e))?;
        let StartExecResults::Attached {
            output,
            input: mut stdin,
        } = started
        else {
            return Err(format!("the engine detached {what}"));
        };
        let writer = (!input.is_empty()).then(|| {
            let input = input.to_vec();
            tokio::spawn(async move {
                stdin.write_all(&input).await?;
                stdin.shutdown().await
            })
        });
        Ok((exec.id, output, writer))
    }

    async fn exec(&self, cmd: Vec<String>, user: &str) -> StepResult<ExecOutput> {
        self.exec_with_input(cmd, user, &[]).await
    }

    /// Runs an argv array in the container as `user`, feeding `input` to its
    /// stdin when not empty; collects (bounded) stdout and stderr.
    async fn exec_with_input(
        &self,
        cmd: Vec<String>,
        user: &str,
        input: &[u8],
    ) -> StepResult<ExecOutput> {
        const KEEP: usize = 1 << 20;
        let what = cmd.first().cloned().unwrap_or_default();
        let (exec_id, mut output, writer) = self.start_exec(cmd, user, input).await?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(item) = output.next().await {
            match item.map_err(|e| engine_failure(&format!("running {what}"), &e))? {
                bollard::container::LogOutput::StdOut { message } if stdout.len() < KEEP => {
                    stdout.extend_from_slice(&message)
                }
                bollard::container::LogOutput::StdErr { message } if stderr.len() < KEEP => {
                    stderr.extend_from_slice(&message)
                }
                _ => {}
            }
        }
        let exit_code = self
            .docker
            .inspect_exec(&exec_id)
            .await
            .map_err(|e| engine_failure(&format!("running {what}"), &e))?
            .exit_code
            .unwrap_or(-1);
        if let Some(writer) = writer {
            let written = if writer.is_finished() {
                writer
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            } else {
                writer.abort();
                Err("it exited before reading all its input".into())
            };
            if let (Err(e), 0) = (written, exit_code) {
                return Err(format!("writing to {what}: {e}"));
            }
        }
        Ok(ExecOutput {
            exit_code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

fn exec_options(cmd: Vec<String>, user: &str, stdin: bool) -> CreateExecOptions<String> {
    CreateExecOptions {
        cmd: Some(cmd),
        user: Some(user.to_string()),
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..Default::default()
    }
}

/// What a streamed helper command left: its output and the staged dump, or
/// why not (what the helper said explains a staging error, so it comes first).
fn finish_stream(
    streamed: StepResult<ExecOutput>,
    staged: Result<Result<dumps::Staged, EngineError>, tokio::task::JoinError>,
    format: &str,
    what: &str,
) -> StepResult<(dumps::Staged, ExecOutput)> {
    let staged = staged.map_err(|e| format!("storing the {what}: {e}"))?;
    let output = streamed?;
    if output.exit_code != 0 {
        let why = said(&output.stderr);
        return Err(if why.is_empty() {
            format!("the {what} stopped (exit {}): did the container or the process stop?", output.exit_code)
        } else {
            why
        });
    }
    let staged = staged.map_err(|e| format!("storing the {what}: {e}"))?;
    if staged.format != format {
        return Err(format!("Leakscope's helper sent something that is not a {what}"));
    }
    Ok((staged, output))
}

/// Engine errors during a capture, in words: a vanished container or engine says so.
fn engine_failure(what: &str, error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => {
            format!("{what}: the container was removed during the capture")
        }
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        } => {
            format!("{what}: the container stopped during the capture ({message})")
        }
        other => format!("{what}: {other}"),
    }
}

/// Byte counts and rate for the job, updated at most every 200 ms.
struct Progress<'a> {
    engine: &'a Engine,
    job: &'a str,
    bytes: u64,
    started: Instant,
    last: Instant,
}

impl<'a> Progress<'a> {
    fn new(engine: &'a Engine, job: &'a str) -> Self {
        Progress {
            engine,
            job,
            bytes: 0,
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            self.publish();
        }
    }

    fn finish(&mut self) {
        self.publish();
    }

    fn publish(&self) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let (bytes, rate) = (self.bytes, self.bytes as f64 / seconds);
        self.engine.update_job(self.job, |j| {
            j.bytes_copied = bytes;
            j.rate_bytes_per_sec = rate;
        });
    }
}

fn single_file_tar(name: &str, contents: &[u8], mode: u32) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, name, contents)?;
    builder.into_inner()
}

/// A process from one line of a helper listing (`pid uid gid … command`,
/// tab-separated): the fields every listing shares; the recipe fills in the rest.
fn listed_process(fields: &[&str], runtime: &str, rss_kib: &str) -> Option<RuntimeProcess> {
    Some(RuntimeProcess {
        pid: fields.first()?.parse().ok()?,
        uid: fields.get(1)?.parse().ok()?,
        gid: fields.get(2)?.parse().ok()?,
        runtime: runtime.into(),
        version: None,
        rss_bytes: rss_kib.parse::<u64>().ok().map(|kib| kib << 10),
        tool: None,
        capturable: true,
        note: None,
        command: fields.last()?.to_string(),
        kinds: Vec::new(),
    })
}

/// One entry per pid: the first (richest) recipe that found a process gives
/// its runtime and note; each recipe that can capture it adds its kind.
fn merge_found(processes: &mut Vec<RuntimeProcess>, kind: &str, found: Vec<RuntimeProcess>) {
    for mut process in found {
        match processes.iter_mut().find(|p| p.pid == process.pid) {
            Some(known) => {
                if process.capturable {
                    known.kinds.push(kind.to_string());
                    known.capturable = true;
                }
                known.rss_bytes = known.rss_bytes.or(process.rss_bytes);
            }
            None => {
                process.kinds = if process.capturable { vec![kind.to_string()] } else { Vec::new() };
                processes.push(process);
            }
        }
    }
}

/// Found by a runtime's recipe (a JVM, node, CPython), whether or not it can capture it;
/// Go programs without pprof and other processes only offer memory maps.
fn recognised(process: &RuntimeProcess) -> bool {
    !matches!(process.runtime.as_str(), "native" | "go")
}

/// `; it offers memory-map`, for an error.
fn offered(process: &RuntimeProcess) -> String {
    match process.kinds.as_slice() {
        [] => process.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        kinds => format!("; it offers {}", kinds.join(", ")),
    }
}

/// The process a capture is about: the pid asked for; else the one process
/// a runtime recipe recognised (or that offers the kind asked for); else,
/// when only memory maps are possible, the process holding the most memory.
fn choose_process(found: &[RuntimeProcess], pid: Option<u32>, kind: Option<&str>, trouble: &[String]) -> StepResult<RuntimeProcess> {
    if let Some(pid) = pid {
        return found
            .iter()
            .find(|p| p.pid == pid)
            .cloned()
            .ok_or_else(|| format!("no process has pid {pid} in this container (it may have exited)"));
    }
    let rich: Vec<&RuntimeProcess> = match kind {
        Some(kind) => found.iter().filter(|p| p.kinds.iter().any(|k| k == kind)).collect(),
        None => found.iter().filter(|p| recognised(p) || p.kinds.first().is_none_or(|k| k != "memory-map")).collect(),
    };
    let only_maps = kind.is_none_or(offered_by_every_process);
    match rich.as_slice() {
        [] if only_maps && !found.is_empty() => Ok(found.iter().max_by_key(|p| p.rss_bytes.unwrap_or(0)).cloned().unwrap_or_else(|| found[0].clone())),
        [] => {
            let mut message = match kind {
                Some(kind) => format!("no process in this container offers a {kind}"),
                None => "no process was found in this container (looked in /proc with Leakscope's helper)".to_string(),
            };
            // Why the processes that are there cannot give it (attach disabled, no pprof …).
            for process in found.iter().filter(|p| p.note.is_some()) {
                message.push_str(&format!("; {} pid {}: {}", process.runtime, process.pid, process.note.clone().unwrap_or_default()));
            }
            for why in trouble {
                message.push_str("; ");
                message.push_str(why);
            }
            Err(message)
        }
        [only] => Ok((*only).clone()),
        several if kind.is_some_and(offered_by_every_process) => Ok(several.iter().max_by_key(|p| p.rss_bytes.unwrap_or(0)).map(|p| (*p).clone()).unwrap_or_else(|| several[0].clone())),
        several => Err(format!(
            "this container runs {} processes Leakscope can capture; choose one: {}",
            several.len(),
            several
                .iter()
                .map(|p| format!("{} pid {} ({})", p.runtime, p.pid, shorten(&p.command, 80)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

impl Capture {
    /// Runs one command of our helper: in the container when it runs there
    /// (as `user`), else in a helper container beside it.
    async fn run_helper(&mut self, args: &[String], user: &str) -> StepResult<ExecOutput> {
        match self.helper.clone() {
            Some(helper) => {
                let mut argv = helper.prefix;
                argv.extend(args.iter().cloned());
                self.exec(argv, user).await
            }
            None => self.sidecar_run(args).await,
        }
    }

    /// Streams what one command of our helper writes to stdout into the
    /// store's staging file (as [`Capture::run_helper`] runs it) and checks
    /// that it is a `format` dump; `what` names it in errors.
    async fn stream_helper(
        &mut self,
        args: &[String],
        user: &str,
        format: &str,
        what: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> StepResult<(dumps::Staged, ExecOutput)> {
        let (tx, stager) = self.stager();
        let streamed = match self.helper.clone() {
            Some(helper) => {
                let mut argv = helper.prefix;
                argv.extend(args.iter().cloned());
                self.stream_command(argv, user, &[], tx, on_line).await
            }
            None => self.sidecar_stream(args, None, tx, on_line).await,
        };
        finish_stream(streamed, stager.await, format, what)
    }

    /// As [`Capture::stream_helper`], from the helper beside the container
    /// (CAP_SYS_PTRACE), whether or not ours runs inside.
    async fn stream_helper_beside(
        &mut self,
        args: &[String],
        format: &str,
        what: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> StepResult<(dumps::Staged, ExecOutput)> {
        let (tx, stager) = self.stager();
        let streamed = self.sidecar_stream(args, None, tx, on_line).await;
        finish_stream(streamed, stager.await, format, what)
    }

    /// Commands of the container's processes as the engine sees them (`docker
    /// top`): how a recipe without our helper tells whether its runtime is there.
    async fn top_commands(&mut self) -> Vec<String> {
        if self.top.is_none() {
            // The engine needs a pid column to map host pids to the container.
            let options = bollard::query_parameters::TopOptionsBuilder::default()
                .ps_args("-eo pid,args")
                .build();
            let rows = match self.docker.top_processes(self.id(), Some(options)).await {
                Ok(top) => top.processes.unwrap_or_default(),
                Err(e) => {
                    tracing::info!(job = %self.job, error = %e, "docker top failed");
                    Vec::new()
                }
            };
            self.top = Some(
                rows.into_iter()
                    .filter_map(|row| row.into_iter().nth(1))
                    .collect(),
            );
        }
        self.top.clone().unwrap_or_default()
    }

    /// Absolute paths of executables named `name` that the container's
    /// processes were started with, after `name` itself (found through PATH).
    async fn runtime_candidates(&mut self, name: &str) -> Vec<String> {
        let mut candidates = vec![name.to_string()];
        for command in self.top_commands().await {
            let first = command
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if first.starts_with('/')
                && first.rsplit('/').next() == Some(name)
                && !candidates.contains(&first)
            {
                candidates.push(first);
            }
        }
        candidates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, runtime: &str) -> RuntimeProcess {
        RuntimeProcess {
            pid,
            uid: 0,
            gid: 0,
            runtime: runtime.into(),
            version: None,
            rss_bytes: None,
            tool: None,
            capturable: true,
            note: None,
            command: format!("{runtime} app"),
            kinds: vec![if runtime == "native" { "memory-map" } else { "heap-dump" }.into()],
        }
    }

    #[test]
    fn a_process_is_chosen_only_when_it_is_clear_which() {
        let found = [process(1, "java"), process(7, "node")];
        assert!(choose_process(&found, None, None, &[]).unwrap_err().contains("runs 2 processes"));
        assert_eq!(choose_process(&found, Some(7), None, &[]).unwrap().runtime, "node");
        assert!(choose_process(&found, Some(9), None, &[]).unwrap_err().contains("pid 9"));
        assert_eq!(choose_process(&found[..1], None, None, &[]).unwrap().pid, 1);
        let none = choose_process(&[], None, None, &["/tmp is noexec".into()]).unwrap_err();
        assert!(none.contains("no process was found") && none.contains("/tmp is noexec"), "{none}");
        // A shell that started a native program, and the program: the memory map of the bigger.
        let mut shell = process(1, "native");
        shell.rss_bytes = Some(1 << 20);
        let mut program = process(8, "native");
        program.rss_bytes = Some(300 << 20);
        assert_eq!(choose_process(&[shell.clone(), program.clone()], None, None, &[]).unwrap().pid, 8);
        // Beside a JVM, the JVM (its heap dump) by default, the biggest process for a memory map.
        let jvm = process(3, "java");
        assert_eq!(choose_process(&[shell.clone(), jvm.clone(), program.clone()], None, None, &[]).unwrap().pid, 3);
        assert_eq!(choose_process(&[shell, jvm, program], None, Some("memory-map"), &[]).unwrap().pid, 8);
        assert!(choose_process(&found, None, Some("heap-profile"), &[]).unwrap_err().contains("no process in this container offers a heap-profile"));
        // A JVM that refuses attach is still the process a capture is about (and says why), not the shell beside it.
        let mut refusing = process(3, "java");
        refusing.kinds = vec!["memory-map".into()];
        let mut shell = process(1, "native");
        shell.rss_bytes = Some(1 << 20);
        assert_eq!(choose_process(&[shell, refusing], None, None, &[]).unwrap().pid, 3);
    }

    #[test]
    fn recipes_that_find_one_process_add_their_kinds() {
        let mut processes = Vec::new();
        let mut old_python = process(5, "python");
        old_python.capturable = false;
        old_python.note = Some("Python 3.8".into());
        merge_found(&mut processes, "heap-dump", vec![process(1, "java")]);
        merge_found(&mut processes, "object-graph", vec![old_python]);
        merge_found(&mut processes, "memory-map", vec![process(1, "native"), process(5, "native"), process(9, "native")]);
        let kinds: Vec<(u32, Vec<String>)> = processes.iter().map(|p| (p.pid, p.kinds.clone())).collect();
        assert_eq!(kinds, vec![(1, vec!["heap-dump".into(), "memory-map".into()]), (5, vec!["memory-map".into()]), (9, vec!["memory-map".into()])]);
        assert_eq!(processes[1].runtime, "python");
        assert!(processes[1].capturable);
    }
}
