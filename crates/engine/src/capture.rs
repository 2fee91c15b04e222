//! Heap dump capture from a running container, with no tools required in the image.
//!
//! A capture is a job: locate the JVMs (our static helper lists them from
//! `/proc` inside the container), ask one for a dump (its own `jcmd` when the
//! image has one, else the helper speaks HotSpot's attach protocol), stream the
//! file out (the archive API like `docker cp`, or exec stdout when /tmp is a
//! tmpfs the archive API cannot see), store it, and clean up both sides.
//!
//! Every exec is an argv array; nothing from a request is ever put into a shell
//! string. The only paths used inside the container are our own fixed names.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder};
use bollard::Docker;
use futures::StreamExt;
use leakscope_model::capture::{CaptureJob, JvmProcess};
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
}

/// What the caller asked for.
#[derive(Clone, Debug)]
pub struct CaptureRequest {
    pub container: String,
    pub pid: Option<u32>,
    /// `manual` (dashboard, API) or `auto`.
    pub trigger: String,
    pub requested_by: Option<String>,
}

/// What a failed step says to the user; becomes the job's `error`.
type StepResult<T> = Result<T, String>;

impl Engine {
    /// Starts a capture job (or joins the one already running for this container).
    pub async fn start_capture(&self, request: CaptureRequest) -> Result<String, EngineError> {
        let docker = self.docker()?.with_timeout(CAPTURE_TIMEOUT);
        let inspect = match docker.inspect_container(&request.container, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Err(EngineError::UnknownContainer(request.container.clone()))
            }
            Err(e) => return Err(EngineError::Internal(format!("inspecting {}: {e}", request.container))),
        };
        let id = inspect.id.clone().unwrap_or_default();
        let name = inspect.name.as_deref().unwrap_or(&id).trim_start_matches('/').to_string();
        if !inspect.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(EngineError::BadRequest(format!("container {name} is not running; a heap dump needs a live JVM")));
        }
        let jobs = &self.inner.jobs;
        let job_id = {
            let mut running = lock(&jobs.running);
            if let Some(existing) = running.get(&id) {
                return Ok(existing.clone());
            }
            let job_id = dumps::new_id()?;
            running.insert(id.clone(), job_id.clone());
            let mut all = lock(&jobs.all);
            all.push(CaptureJob {
                job_id: job_id.clone(),
                container: name.clone(),
                state: "running".into(),
                stage: "starting".into(),
                recipe: None,
                pid: request.pid,
                bytes_copied: 0,
                bytes_total: None,
                rate_bytes_per_sec: 0.0,
                started_ms: now_ms(),
                finished_ms: None,
                dump_id: None,
                error: None,
                jvms: Vec::new(),
            });
            let excess = all.len().saturating_sub(KEEP_JOBS);
            all.drain(..excess);
            job_id
        };
        let engine = self.clone();
        let job = job_id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut capture = Capture { engine: engine.clone(), docker, job: job.clone(), inspect, helper: None, placed: Vec::new(), dump_path: None };
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
        });
        Ok(job_id)
    }

    pub fn capture_job(&self, job_id: &str) -> Option<CaptureJob> {
        lock(&self.inner.jobs.all).iter().find(|j| j.job_id == job_id).cloned()
    }

    /// The most recent job for a container (by name), running or not.
    pub fn latest_capture(&self, container_name: &str) -> Option<CaptureJob> {
        lock(&self.inner.jobs.all).iter().rev().find(|j| j.container == container_name).cloned()
    }

    fn update_job(&self, job_id: &str, change: impl FnOnce(&mut CaptureJob)) {
        if let Some(job) = lock(&self.inner.jobs.all).iter_mut().find(|j| j.job_id == job_id) {
            change(job);
        }
    }
}

/// Our helper inside the container: the static binary, or the jar run by the container's java.
struct Helper {
    prefix: Vec<String>,
    /// `agent` or `java-attach`: how a dump is taken when the image has no jcmd.
    recipe: &'static str,
}

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
    /// How to run our helper inside the container (argv prefix), once it runs there.
    helper: Option<Helper>,
    /// Files we put into the container, removed at the end.
    placed: Vec<String>,
    /// The dump's path inside the container, once asked for.
    dump_path: Option<String>,
}

impl Capture {
    fn id(&self) -> &str {
        self.inspect.id.as_deref().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.inspect.name.as_deref().unwrap_or_default().trim_start_matches('/').to_string()
    }

    fn stage(&self, stage: &str) {
        self.engine.update_job(&self.job, |j| j.stage = stage.into());
    }

    /// True when /tmp is a tmpfs or the root filesystem is read-only: the
    /// archive API (like `docker cp`) sees neither, so files go through exec.
    fn archive_api_unusable(&self) -> bool {
        let host = self.inspect.host_config.as_ref();
        let read_only = host.and_then(|h| h.readonly_rootfs).unwrap_or(false);
        let tmpfs_flag = host.and_then(|h| h.tmpfs.as_ref()).is_some_and(|t| t.contains_key(CONTAINER_DIR));
        let tmp_mount = self
            .inspect
            .mounts
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m.destination.as_deref() == Some(CONTAINER_DIR)));
        read_only || tmpfs_flag || tmp_mount
    }

    async fn run(&mut self, request: &CaptureRequest, started: Instant) -> StepResult<String> {
        self.stage("locating");
        self.install_helper().await?;
        let jvms = self.list_jvms().await?;
        let jvm = choose_jvm(&jvms, request.pid).map_err(|message| {
            self.engine.update_job(&self.job, |j| j.jvms = jvms.clone());
            message
        })?;
        if !jvm.attach_enabled {
            return Err(format!(
                "JVM pid {} was started with -XX:+DisableAttachMechanism, so no tool can ask it for a heap dump; \
                 remove that flag (or add -XX:+HeapDumpOnOutOfMemoryError to get a dump when it runs out of memory)",
                jvm.pid
            ));
        }
        self.check_free_space()?;

        self.stage("dumping");
        let path = format!("{CONTAINER_DIR}/leakscope-{}.hprof", self.job);
        self.dump_path = Some(path.clone());
        let recipe = if jvm.jcmd.is_some() { "jcmd" } else { self.helper.as_ref().map(|h| h.recipe).unwrap_or("agent") };
        self.engine.update_job(&self.job, |j| {
            j.pid = Some(jvm.pid);
            j.recipe = Some(recipe.into());
        });
        let user = format!("{}:{}", jvm.uid, jvm.gid);
        let pid = jvm.pid.to_string();
        let output = match &jvm.jcmd {
            Some(jcmd) => self.exec(vec![jcmd.clone(), pid, "GC.heap_dump".into(), path.clone()], &user).await?,
            None => self.exec(self.helper_command(&["dump", &pid, &path]), &user).await?,
        };
        // jcmd exits 0 even when the dump failed; its words are the only proof.
        if !output.stdout.contains("Heap dump file created") {
            let said = format!("{} {}", output.stdout.trim(), output.stderr.trim());
            return Err(format!("the JVM did not write a heap dump ({recipe}, exit {}): {}", output.exit_code, said.trim()));
        }
        let expected = dump_size(&output.stdout);
        self.engine.update_job(&self.job, |j| j.bytes_total = expected);

        self.stage("copying");
        let staged = self.copy_out(&path, expected).await?;
        if let Some(expected) = expected {
            if staged.size_bytes != expected {
                return Err(format!(
                    "the copy ended early: {} of {expected} bytes arrived (was the container stopped?)",
                    staged.size_bytes
                ));
            }
        }

        self.stage("storing");
        let labels = self.inspect.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        let meta = NewDump {
            file_name: format!("{}-{}.hprof", self.name(), chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
            service: labels.get("com.docker.compose.service").cloned(),
            container_name: Some(self.name()),
            container_id: Some(self.id().to_string()),
            image: self.inspect.config.as_ref().and_then(|c| c.image.clone()),
            trigger: request.trigger.clone(),
            expected_bytes: expected,
            pid: Some(jvm.pid),
            runtime: Some(jvm.version.as_deref().map(|v| format!("java {v}")).unwrap_or_else(|| "java".into())),
            capture_ms: Some(started.elapsed().as_millis() as u64),
            requested_by: request.requested_by.clone(),
        };
        let info = self
            .engine
            .blocking(move |e| lock(&e.inner.dumps).commit(staged, meta, now_ms()))
            .await
            .map_err(|e| e.to_string())?;
        self.engine.spawn_analysis(info.id.clone());
        Ok(info.id)
    }

    fn check_free_space(&self) -> StepResult<()> {
        let dir = self.engine.inner.config.data_dir.join("dumps");
        // A heap dump is at most about the size of the process's memory.
        let need = self.engine.find_live(self.id()).and_then(|c| c.memory).map(|m| m.usage_bytes);
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

    /// Argv for one helper command.
    fn helper_command(&self, args: &[&str]) -> Vec<String> {
        let mut argv = self.helper.as_ref().map(|h| h.prefix.clone()).unwrap_or_default();
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// Puts a helper into the container's /tmp that runs there: our static
    /// binary, else (when /tmp is noexec) our jar run by the container's own java.
    async fn install_helper(&mut self) -> StepResult<()> {
        let native = match self.install_native_agent().await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        match self.install_java_client().await {
            Ok(()) => Ok(()),
            Err(java) => Err(format!("{native} (The fallback, Leakscope's attach client run by the container's own java, is not possible either: {java}.)")),
        }
    }

    async fn install_native_agent(&mut self) -> StepResult<()> {
        let Some(local) = self.engine.inner.config.agent_path.clone() else {
            return Err("Leakscope's capture helper was not built (run the build, or pass --agent)".into());
        };
        let binary = tokio::fs::read(&local)
            .await
            .map_err(|e| format!("cannot read the capture helper {}: {e}", local.display()))?;
        let file_name = format!(".leakscope-agent-{}", self.job);
        let path = format!("{CONTAINER_DIR}/{file_name}");
        // Remember it before copying so clean-up removes it whatever happens next.
        self.placed.push(path.clone());
        if !self.archive_api_unusable() {
            let tar = single_file_tar(&file_name, &binary, 0o755).map_err(|e| format!("packing the helper: {e}"))?;
            let options = UploadToContainerOptionsBuilder::default().path(CONTAINER_DIR).build();
            if let Err(e) = self.docker.upload_to_container(self.id(), Some(options), bollard::body_full(tar.into())).await {
                tracing::info!(job = %self.job, error = %e, "archive upload refused; copying through exec");
            }
        }
        let helper = Helper { prefix: vec![path.clone()], recipe: "agent" };
        if self.helper_runs(&helper).await? {
            self.helper = Some(helper);
            return Ok(());
        }
        self.copy_in(&path, &binary, true).await?;
        let check = self.exec(vec![path.clone(), "version".into()], "0:0").await?;
        if check.exit_code == 0 {
            self.helper = Some(helper);
            return Ok(());
        }
        if check.exit_code == 126 || check.stderr.contains("permission denied") {
            return Err(format!(
                "{CONTAINER_DIR} in this container is mounted noexec (Docker's default for --tmpfs), so Leakscope's \
                 helper cannot run there. Mount it with exec (--tmpfs /tmp:exec) or add a JDK's jcmd to the image."
            ));
        }
        Err(format!("the capture helper does not run in this container (exit {}): {}", check.exit_code, check.stderr.trim()))
    }

    /// The jar needs no exec permission: `java -cp /tmp/x.jar` reads it.
    async fn install_java_client(&mut self) -> StepResult<()> {
        let Some(local) = self.engine.inner.config.attach_jar_path.clone().filter(|p| p.is_file()) else {
            return Err("its jar was not built (the build needs a JDK's javac)".into());
        };
        let jar = tokio::fs::read(&local).await.map_err(|e| format!("cannot read {}: {e}", local.display()))?;
        let path = format!("{CONTAINER_DIR}/.leakscope-attach-{}.jar", self.job);
        self.placed.push(path.clone());
        self.copy_in(&path, &jar, false).await?;
        for java in self.java_candidates().await {
            // Small and quick: this JVM shares the container's memory limit.
            let prefix = [java.as_str(), "-Xmx24m", "-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-cp", &path, "LeakscopeAttach"];
            let helper = Helper { prefix: prefix.iter().map(|s| s.to_string()).collect(), recipe: "java-attach" };
            if self.helper_runs(&helper).await? {
                self.helper = Some(helper);
                return Ok(());
            }
        }
        Err("no java runs in the container through exec (not on PATH, and no absolute java path in its processes)".into())
    }

    /// `java` on the image's PATH, then absolute java paths its processes were started with.
    async fn java_candidates(&self) -> Vec<String> {
        let mut candidates = vec!["java".to_string()];
        let options = bollard::query_parameters::TopOptionsBuilder::default().ps_args("-eo args").build();
        if let Ok(top) = self.docker.top_processes(self.id(), Some(options)).await {
            for row in top.processes.unwrap_or_default() {
                let first = row.first().and_then(|args| args.split_whitespace().next()).unwrap_or_default().to_string();
                if first.starts_with('/') && first.ends_with("/java") && !candidates.contains(&first) {
                    candidates.push(first);
                }
            }
        }
        candidates
    }

    async fn helper_runs(&self, helper: &Helper) -> StepResult<bool> {
        let mut argv = helper.prefix.clone();
        argv.push("version".into());
        Ok(self.exec(argv, "0:0").await.map(|o| o.exit_code == 0).unwrap_or(false))
    }

    /// Streams `contents` into a new file through exec stdin, with the
    /// container's own sh and cat (the archive API cannot write to tmpfs).
    async fn copy_in(&self, path: &str, contents: &[u8], executable: bool) -> StepResult<()> {
        let script = if executable { "cat > \"$0\" && chmod 755 \"$0\"" } else { "cat > \"$0\"" };
        let copied = self.exec_with_input(vec!["sh".into(), "-c".into(), script.into(), path.to_string()], "0:0", contents).await;
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

    async fn list_jvms(&self) -> StepResult<Vec<JvmProcess>> {
        let output = self.exec(self.helper_command(&["jvms"]), "0:0").await?;
        if output.exit_code != 0 {
            return Err(format!("listing the processes in the container failed: {}", output.stderr.trim()));
        }
        Ok(parse_jvms(&output.stdout))
    }

    /// Streams the dump out of the container into the store's staging file.
    async fn copy_out(&self, path: &str, expected: Option<u64>) -> StepResult<dumps::Staged> {
        let dir = self.engine.inner.config.data_dir.join("dumps");
        let (tx, reader) = channel_reader();
        let via_archive = !self.archive_api_unusable();
        let stager = tokio::task::spawn_blocking(move || -> Result<dumps::Staged, EngineError> {
            if via_archive {
                let mut archive = tar::Archive::new(reader);
                let mut entries = archive.entries().map_err(|e| EngineError::Internal(format!("reading the archive: {e}")))?;
                let entry = entries
                    .next()
                    .ok_or_else(|| EngineError::Internal("the archive from the engine was empty".into()))?
                    .map_err(|e| EngineError::Internal(format!("reading the archive: {e}")))?;
                dumps::stage(&dir, entry, expected)
            } else {
                dumps::stage(&dir, reader, expected)
            }
        });
        let copied = if via_archive { self.stream_archive(path, tx).await } else { self.stream_exec(path, tx).await };
        let staged = stager.await.map_err(|e| format!("storing the dump: {e}"))?;
        // A copy error explains a staging error (a truncated stream), so report it first.
        copied?;
        staged.map_err(|e| format!("storing the dump: {e}"))
    }

    async fn stream_archive(&self, path: &str, tx: mpsc::Sender<Chunk>) -> StepResult<()> {
        let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
        let mut stream = self.docker.download_from_container(self.id(), Some(options));
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
        let exec = self
            .docker
            .create_exec(self.id(), exec_options(self.helper_command(&["cat", path]), "0:0", false))
            .await
            .map_err(|e| engine_failure("starting the copy", &e))?;
        let started = self.docker.start_exec(&exec.id, Some(StartExecOptions { detach: false, ..Default::default() })).await;
        let StartExecResults::Attached { mut output, .. } = started.map_err(|e| engine_failure("starting the copy", &e))? else {
            return Err("the engine detached the copy".into());
        };
        let mut progress = Progress::new(&self.engine, &self.job);
        let mut stderr = String::new();
        while let Some(item) = output.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdOut { message }) => {
                    progress.add(message.len());
                    if tx.send(Ok(message)).await.is_err() {
                        break;
                    }
                }
                Ok(other) => stderr.push_str(&String::from_utf8_lossy(&other.into_bytes())),
                Err(e) => {
                    let message = engine_failure("copying the dump out of the container", &e);
                    let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
                    return Err(message);
                }
            }
        }
        progress.finish();
        let code = self.docker.inspect_exec(&exec.id).await.ok().and_then(|i| i.exit_code).unwrap_or(-1);
        if code != 0 {
            let message = format!("copying the dump out of the container failed (exit {code}): {}", stderr.trim());
            let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
            return Err(message);
        }
        Ok(())
    }

    /// Removes the dump and the helper from the container, whatever happened.
    async fn clean_up(&self) {
        let files: Vec<String> = self.dump_path.iter().chain(self.placed.iter()).cloned().collect();
        if files.is_empty() {
            return;
        }
        let mut command = vec!["rm".to_string(), "-f".to_string()];
        command.extend(files.iter().cloned());
        let removed = self.exec(command, "0:0").await.map(|o| o.exit_code == 0).unwrap_or(false);
        if !removed && self.helper.is_some() {
            // Images without rm: the helper removes the files (itself included).
            let mut command = self.helper_command(&["rm"]);
            command.extend(files.iter().cloned());
            let _ = self.exec(command, "0:0").await;
        }
    }

    async fn exec(&self, cmd: Vec<String>, user: &str) -> StepResult<ExecOutput> {
        self.exec_with_input(cmd, user, &[]).await
    }

    /// Runs an argv array in the container as `user`, feeding `input` to its
    /// stdin when not empty; collects (bounded) stdout and stderr.
    async fn exec_with_input(&self, cmd: Vec<String>, user: &str, input: &[u8]) -> StepResult<ExecOutput> {
        const KEEP: usize = 1 << 20;
        let what = cmd.first().cloned().unwrap_or_default();
        let exec = self
            .docker
            .create_exec(self.id(), exec_options(cmd, user, !input.is_empty()))
            .await
            .map_err(|e| engine_failure(&format!("running {what}"), &e))?;
        let started = self
            .docker
            .start_exec(&exec.id, Some(StartExecOptions { detach: false, ..Default::default() }))
            .await
            .map_err(|e| engine_failure(&format!("running {what}"), &e))?;
        let StartExecResults::Attached { mut output, input: mut stdin } = started else {
            return Err(format!("the engine detached {what}"));
        };
        // Feed stdin while reading the output: a command that fails early stops
        // reading its input, and its exit code and stderr say why.
        let writer = (!input.is_empty()).then(|| {
            let input = input.to_vec();
            tokio::spawn(async move {
                stdin.write_all(&input).await?;
                stdin.shutdown().await
            })
        });
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(item) = output.next().await {
            match item.map_err(|e| engine_failure(&format!("running {what}"), &e))? {
                bollard::container::LogOutput::StdOut { message } if stdout.len() < KEEP => stdout.extend_from_slice(&message),
                bollard::container::LogOutput::StdErr { message } if stderr.len() < KEEP => stderr.extend_from_slice(&message),
                _ => {}
            }
        }
        let exit_code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| engine_failure(&format!("running {what}"), &e))?
            .exit_code
            .unwrap_or(-1);
        if let Some(writer) = writer {
            let written = if writer.is_finished() {
                writer.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()))
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

/// Engine errors during a capture, in words: a vanished container or engine says so.
fn engine_failure(what: &str, error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
            format!("{what}: the container was removed during the capture")
        }
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message } => {
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
        Progress { engine, job, bytes: 0, started: Instant::now(), last: Instant::now() }
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

/// The helper's `jvms` lines: pid uid gid version jcmd attach command (tab-separated).
pub fn parse_jvms(text: &str) -> Vec<JvmProcess> {
    let dash_is_none = |v: &str| (v != "-" && !v.is_empty()).then(|| v.to_string());
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(7, '\t').collect();
            if f.len() < 7 {
                return None;
            }
            Some(JvmProcess {
                pid: f[0].parse().ok()?,
                uid: f[1].parse().ok()?,
                gid: f[2].parse().ok()?,
                version: dash_is_none(f[3]),
                jcmd: dash_is_none(f[4]),
                attach_enabled: f[5] == "enabled",
                command: f[6].to_string(),
            })
        })
        .collect()
}

fn choose_jvm(jvms: &[JvmProcess], pid: Option<u32>) -> StepResult<JvmProcess> {
    match (pid, jvms) {
        (Some(pid), _) => jvms
            .iter()
            .find(|j| j.pid == pid)
            .cloned()
            .ok_or_else(|| format!("no JVM with pid {pid} runs in this container")),
        (None, []) => Err("no JVM runs in this container (looked for java processes in /proc). Capture handles Java only \
             so far; for Node.js, write a snapshot in the container (`node --heapsnapshot-signal=SIGUSR2` then \
             `kill -USR2 PID`, or `v8.writeHeapSnapshot()`) and upload the .heapsnapshot on the Dumps page: it is \
             analysed here like a Java dump"
            .into()),
        (None, [only]) => Ok(only.clone()),
        (None, several) => Err(format!(
            "this container runs {} JVMs; choose one: {}",
            several.len(),
            several.iter().map(|j| format!("pid {} ({})", j.pid, shorten(&j.command, 80))).collect::<Vec<_>>().join(", ")
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

/// `Heap dump file created [4779606 bytes in 0.016 secs]` -> 4779606.
fn dump_size(output: &str) -> Option<u64> {
    let rest = output.split("Heap dump file created [").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_helper_output_and_the_jvm_answer() {
        let jvms = parse_jvms("1\t1000\t1000\t17.0.15\t-\tenabled\tjava -cp app.jar Main\n7\t0\t0\t-\t/jdk/bin/jcmd\tdisabled\tjava\tX\n");
        assert_eq!(jvms.len(), 2);
        assert_eq!((jvms[0].pid, jvms[0].uid, jvms[0].version.as_deref()), (1, 1000, Some("17.0.15")));
        assert_eq!(jvms[1].jcmd.as_deref(), Some("/jdk/bin/jcmd"));
        assert!(!jvms[1].attach_enabled);
        assert_eq!(jvms[1].command, "java\tX");
        assert_eq!(dump_size("Dumping heap to /tmp/x ...\nHeap dump file created [4779606 bytes in 0.016 secs]\n"), Some(4779606));
        assert!(choose_jvm(&jvms, None).unwrap_err().contains("runs 2 JVMs"));
        assert_eq!(choose_jvm(&jvms, Some(7)).unwrap().pid, 7);
        assert!(choose_jvm(&[], None).unwrap_err().contains("no JVM"));
    }
}
