//! Any process, when asked for: an ELF core dump for gdb (threads, backtraces,
//! the memory itself), written by our helper (`crates/agent/src/core_dump.rs`).
//! It needs ptrace, so the helper always runs beside the target with
//! CAP_SYS_PTRACE (`sidecar.rs`); every thread is stopped while the memory is
//! copied, and the record keeps how long. Never the default kind. Where the
//! engine runs on this machine, the helper writes the core into a folder of
//! the dump folder shared with it (local disk: the process is stopped about
//! a sixth as long as while Docker carries a stream), and the server stores
//! it from there; elsewhere the core is streamed like any dump.

use leakscope_model::capture::RuntimeProcess;

use super::sidecar::SHARED_IN_HELPER;
use super::{finish_stream, status_line, Capture, Produced, Recipe, StepResult};
use crate::{dumps, EngineError};

pub(super) struct CoreDump;

#[async_trait::async_trait]
impl Recipe for CoreDump {
    fn kind(&self) -> &'static str {
        "core"
    }

    fn offered_by_every_process(&self) -> bool {
        true
    }

    /// Nothing to find: every process the other recipes listed offers a core.
    async fn find(&self, _capture: &mut Capture) -> StepResult<Vec<RuntimeProcess>> {
        Ok(Vec::new())
    }

    async fn produce(&self, capture: &mut Capture, process: &RuntimeProcess) -> StepResult<Produced> {
        let pid = process.pid;
        capture.engine.update_job(&capture.job, |j| {
            j.recipe = Some("core".into());
            j.inspector = Some(format!(
                "ptrace from Leakscope's helper in a container beside this one (CAP_SYS_PTRACE only): every thread of pid {pid} \
                 is stopped while its memory is copied, then let go; the helper container is removed afterwards"
            ));
        });
        let (engine, job) = (capture.engine.clone(), capture.job.clone());
        let mut paused_ms = None;
        let mut in_file = false;
        // A folder of ours the helper writes the core into at disk speed when the
        // engine can share it (it runs on this machine); else the core is streamed.
        let shared = SharedFolder::create(capture).ok();
        let mut args = vec!["core".to_string(), pid.to_string()];
        if let Some(folder) = &shared {
            args.extend([SHARED_IN_HELPER.to_string(), folder.marker.clone()]);
        }
        let (tx, stager) = capture.stager();
        let streamed = capture
            .sidecar_stream(&args, shared.as_ref().map(|f| f.dir.as_path()), tx, &mut |line| match status_line(line) {
                Some(("bytes", total)) => {
                    let total = total.trim().parse().ok();
                    engine.update_job(&job, |j| {
                        j.bytes_total = total;
                        j.stage = "copying".into();
                    });
                }
                Some(("file", _)) => in_file = true,
                Some(("paused_ms", ms)) => {
                    paused_ms = ms.trim().parse::<u64>().ok();
                    if let Some(ms) = paused_ms {
                        engine.update_job(&job, |j| {
                            j.inspector = Some(format!(
                                "ptrace stopped every thread of pid {pid} for {ms} ms while its memory was copied, from Leakscope's \
                                 helper in a container beside this one (CAP_SYS_PTRACE only); let go at once, the helper \
                                 container is removed afterwards"
                            ))
                        });
                    }
                }
                _ => {}
            })
            .await;
        let staged = match (&shared, in_file) {
            // The stream was empty: the core is in the shared folder.
            (Some(folder), true) => {
                drop(stager.await);
                let file = folder.dir.join("core");
                let (files, dir) = capture.engine.dump_target();
                let staged = tokio::task::spawn_blocking(move || {
                    let reader = std::fs::File::open(&file).map_err(|e| EngineError::Internal(format!("reading the core: {e}")))?;
                    dumps::stage(&files, &dir, std::io::BufReader::with_capacity(1 << 20, reader), None)
                })
                .await;
                finish_stream(streamed, staged, "core", "core dump")
            }
            _ => finish_stream(streamed, stager.await, "core", "core dump"),
        };
        drop(shared);
        let (staged, _) = staged?;
        let runtime = match &process.version {
            Some(version) if !process.runtime.is_empty() => format!("{} {version}", process.runtime),
            _ => process.runtime.clone(),
        };
        Ok(Produced { staged, runtime, pause_ms: paused_ms })
    }
}

/// A folder in the dump folder for one job, shared with the helper; removed
/// (with whatever the helper left) when dropped.
struct SharedFolder {
    dir: std::path::PathBuf,
    /// A file of this name, holding its name: how the helper knows the folder it sees is ours.
    marker: String,
}

impl SharedFolder {
    fn create(capture: &Capture) -> Result<SharedFolder, EngineError> {
        use std::os::unix::fs::PermissionsExt;
        let failed = |e: std::io::Error| EngineError::Internal(format!("preparing the core's folder: {e}"));
        let dir = capture.engine.inner.config.data_dir.join("dumps").join(format!(".core-{}", capture.job));
        std::fs::create_dir(&dir).map_err(failed)?;
        let folder = SharedFolder { dir, marker: dumps::new_id()? };
        // The helper is root without CAP_DAC_OVERRIDE, so it has what others have:
        // it may pass through the folder (not list it or add to it), read the
        // marker, and write — not read — the core file made here. Nobody but
        // the server can read the core, whichever user the server runs as.
        std::fs::set_permissions(&folder.dir, std::fs::Permissions::from_mode(0o711)).map_err(failed)?;
        // Modes set after creating, as meant (a umask would narrow them).
        let make = |name: &str, contents: &[u8], mode: u32| -> std::io::Result<()> {
            let path = folder.dir.join(name);
            std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
            std::fs::write(&path, contents)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        };
        make(&folder.marker, folder.marker.as_bytes(), 0o644).map_err(failed)?;
        make("core", b"", 0o602).map_err(failed)?;
        Ok(folder)
    }
}

impl Drop for SharedFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
