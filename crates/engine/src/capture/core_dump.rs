//! Any process, when asked for: an ELF core dump for gdb (threads, backtraces,
//! the memory itself), written by our helper (`crates/agent/src/core_dump.rs`).
//! It needs ptrace, so the helper always runs beside the target with
//! CAP_SYS_PTRACE (`sidecar.rs`); every thread is stopped while the memory is
//! copied, and the record keeps how long. Never the default kind.

use leakscope_model::capture::RuntimeProcess;

use super::{status_line, Capture, Produced, Recipe, StepResult};

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
        let args = ["core".to_string(), pid.to_string()];
        let (staged, _) = capture
            .stream_helper_with_ptrace(&args, "core", "core dump", &mut |line| match status_line(line) {
                Some(("bytes", total)) => {
                    let total = total.trim().parse().ok();
                    engine.update_job(&job, |j| {
                        j.bytes_total = total;
                        j.stage = "copying".into();
                    });
                }
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
            .await?;
        let runtime = match &process.version {
            Some(version) if !process.runtime.is_empty() => format!("{} {version}", process.runtime),
            _ => process.runtime.clone(),
        };
        Ok(Produced { staged, runtime, pause_ms: paused_ms })
    }
}
