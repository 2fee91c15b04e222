//! Any process: a memory-map snapshot (`/proc/<pid>/smaps`, status, threads,
//! open files), whatever its runtime — the one artifact every process offers,
//! and the default for native programs. Read by our helper as the process's
//! own user, so no extra right is needed (a process that made itself
//! non-dumpable is read from beside the container instead); nothing is stopped.

use leakscope_model::capture::RuntimeProcess;

use super::{listed_process, said, Capture, Produced, Recipe, StepResult};

pub(super) struct MemoryMap;

#[async_trait::async_trait]
impl Recipe for MemoryMap {
    fn kind(&self) -> &'static str {
        "memory-map"
    }

    fn offered_by_every_process(&self) -> bool {
        true
    }

    async fn find(&self, capture: &mut Capture) -> StepResult<Vec<RuntimeProcess>> {
        // Without the helper in the container, listing takes a helper container:
        // only worth it when nothing richer was found or a memory map was asked for.
        if capture.helper.is_none() && capture.found_richer && capture.kind.as_deref() != Some(self.kind()) {
            return Ok(Vec::new());
        }
        let listed = capture.run_helper(&["processes".to_string()], "0:0").await?;
        if listed.exit_code != 0 {
            return Err(format!("listing the processes in the container failed: {}", said(&listed.stderr)));
        }
        Ok(parse_processes(&listed.stdout))
    }

    async fn produce(&self, capture: &mut Capture, process: &RuntimeProcess) -> StepResult<Produced> {
        capture.engine.update_job(&capture.job, |j| j.recipe = Some("memory-map".into()));
        // smaps of another user's process needs that user (or CAP_SYS_PTRACE).
        let user = format!("{}:{}", process.uid, process.gid);
        let args = ["memory-map".to_string(), process.pid.to_string()];
        let (staged, _) = match capture.stream_helper(&args, &user, "memmap", "memory map", &mut |_| {}).await {
            // A process that made itself non-dumpable (setuid programs, hardened services)
            // hides its smaps even from its own user: read it beside the container, with CAP_SYS_PTRACE.
            Err(why) if why.contains("not allowed to read") && capture.helper.is_some() => {
                tracing::info!(job = %capture.job, %why, "reading the memory map from beside the container");
                capture.stream_helper_beside(&args, "memmap", "memory map", &mut |_| {}).await?
            }
            other => other?,
        };
        Ok(Produced { staged, runtime: process.runtime.clone(), pause_ms: Some(0) })
    }
}

/// `processes` lines: pid uid gid rss_kib threads runtime command (tab-separated; threads unused here).
fn parse_processes(text: &str) -> Vec<RuntimeProcess> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(7, '\t').collect();
            if f.len() < 7 {
                return None;
            }
            listed_process(&f, f[5], f[3])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_process_listing() {
        let found = parse_processes("1\t0\t0\t300\t1\tnative\t/native-leak\n8\t1000\t1000\t9000\t5\tgo\t/goleak -x\nbad line\n");
        assert_eq!(found.len(), 2);
        assert_eq!((found[1].pid, found[1].uid, found[1].rss_bytes, found[1].runtime.as_str()), (8, 1000, Some(9000 << 10), "go"));
    }
}
