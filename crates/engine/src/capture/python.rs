//! Python (CPython 3.9–3.14): interpreters are listed from /proc; a snapshot
//! is taken by our helper, which makes the interpreter run Leakscope's walk
//! of its own heap on its main thread (`crates/agent/src/python`) and relays
//! the records it streams back over loopback, straight into the store.
//! Nothing is installed in or written into the container.
//!
//! The helper needs ptrace for a few milliseconds (to queue the walk), so it
//! runs in a container of its own beside the target with CAP_SYS_PTRACE
//! (`sidecar.rs`); listing uses the helper copied into the container when it
//! runs there, else the same sidecar. On 3.14 no thread is stopped: the
//! helper writes a request into the interpreter's memory (PEP 768), which
//! needs the same permission, and hands it the walk as a file only the
//! target's user can open, for which it also gets CAP_SETUID and CAP_SETGID.

use std::time::Instant;

use leakscope_model::capture::RuntimeProcess;

use super::{listed_process, said, status_line, JobChange, Capture, Produced, Recipe, StepResult};

pub(super) struct Python;

#[async_trait::async_trait]
impl Recipe for Python {
    fn kind(&self) -> &'static str {
        "object-graph"
    }

    async fn find(&self, capture: &mut Capture) -> StepResult<Vec<RuntimeProcess>> {
        let args = vec!["pythons".to_string()];
        let listed = match capture.helper.clone() {
            Some(helper) => {
                let mut argv = helper.prefix;
                argv.extend(args);
                capture.exec(argv, "0:0").await?
            }
            None => {
                if !capture.top_commands().await.iter().any(|c| looks_like_python(c)) {
                    return Ok(Vec::new());
                }
                capture.sidecar_run(&args).await?
            }
        };
        if listed.exit_code != 0 {
            return Err(format!("listing the Python processes in the container failed: {}", said(&listed.stderr)));
        }
        Ok(parse_pythons(&listed.stdout))
    }

    async fn produce(&self, capture: &mut Capture, process: &RuntimeProcess) -> StepResult<Produced> {
        let remote_debugging = speaks_remote_debugging(process.version.as_deref());
        capture.sidecar_may_switch_user = remote_debugging;
        capture.engine.update_job(&capture.job, |j| {
            j.recipe = Some(if remote_debugging { "python-remote-debug" } else { "python-walk" }.into());
            j.inspector = Some(if remote_debugging {
                "CPython's remote-debugging interface (PEP 768), from Leakscope's helper in a container beside this one \
                 (CAP_SYS_PTRACE to write the request, CAP_SETUID/SETGID to hand the walk over as your process's user): \
                 the interpreter runs the walk at its next safe point; no thread is stopped; the helper is removed afterwards"
                    .into()
            } else {
                "ptrace, for a few milliseconds, from Leakscope's helper in a container beside this one (CAP_SYS_PTRACE only), \
                 to queue the walk; detached and removed again"
                    .into()
            })
        });
        let (tx, stager) = capture.stager();
        let (engine, job) = (capture.engine.clone(), capture.job.clone());
        let mut status = Status::default();
        let started = Instant::now();
        let timeout = capture.engine.inner.config.python_walk_timeout.as_secs().max(1);
        let args = vec!["python-snapshot".to_string(), process.pid.to_string(), timeout.to_string()];
        let streamed = capture
            .sidecar_stream(&args, None, tx, &mut |line| {
                if let Some(change) = status.read(line) {
                    engine.update_job(&job, change);
                }
            })
            .await;
        let staged = stager.await.map_err(|e| format!("storing the snapshot: {e}"))?;
        let output = streamed?;
        if output.exit_code != 0 {
            let why = said(&output.stderr);
            return Err(if why.is_empty() {
                format!("the snapshot stopped (exit {}): did the container or python {} stop?", output.exit_code, process.pid)
            } else {
                why
            });
        }
        let staged = staged.map_err(|e| format!("storing the snapshot: {e}"))?;
        if staged.format != "python" {
            return Err(format!("python {} sent something that is not a Leakscope Python heap snapshot", process.pid));
        }
        tracing::info!(job = %capture.job, ms = started.elapsed().as_millis() as u64, bytes = staged.size_bytes, "python snapshot streamed");
        Ok(Produced {
            staged,
            runtime: format!("python {}", status.version.or(process.version.clone()).unwrap_or_default()).trim().to_string(),
            pause_ms: status.paused_ms,
        })
    }
}

/// CPython 3.14 takes the walk through PEP 768 (the helper's choice too).
fn speaks_remote_debugging(version: Option<&str>) -> bool {
    version.and_then(|v| v.split('.').nth(1)).and_then(|minor| minor.parse::<u32>().ok()) == Some(14)
}

fn looks_like_python(command: &str) -> bool {
    command.split_whitespace().take(2).any(|word| {
        let name = word.rsplit('/').next().unwrap_or(word);
        name.starts_with("python") || matches!(name, "gunicorn" | "uvicorn" | "celery" | "hypercorn" | "daphne")
    })
}


/// What the helper's status lines told so far.
#[derive(Default)]
struct Status {
    version: Option<String>,
    paused_ms: Option<u64>,
}

impl Status {
    fn read(&mut self, line: &str) -> Option<JobChange> {
        let (word, values) = status_line(line)?;
        match word {
            "version" => {
                self.version = Some(values.to_string());
                None
            }
            "stopped_ms" => {
                let ms = values.to_string();
                Some(Box::new(move |j| {
                    j.inspector = Some(format!(
                        "ptrace stopped the main thread for {ms} ms, from Leakscope's helper in a container beside this one \
                         (CAP_SYS_PTRACE only), to queue the walk; detached at once, the helper container is removed afterwards"
                    ))
                }))
            }
            "remote_debug" => {
                let version = values.to_string();
                Some(Box::new(move |j| {
                    j.inspector = Some(format!(
                        "CPython {version}'s remote-debugging interface (PEP 768): the helper, in a container beside this one, \
                         asked the main thread to run the walk at its next safe point; no thread was stopped, and the helper \
                         container is removed afterwards"
                    ))
                }))
            }
            "walking" => Some(Box::new(|j| j.stage = "copying".into())),
            "paused_ms" => {
                self.paused_ms = values.parse().ok();
                None
            }
            _ => None,
        }
    }
}

/// `pythons` lines: pid uid gid version rss_kib command (tab-separated).
fn parse_pythons(text: &str) -> Vec<RuntimeProcess> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(6, '\t').collect();
            if f.len() < 6 {
                return None;
            }
            let version = f[3].to_string();
            let supported = version
                .split('.')
                .nth(1)
                .and_then(|minor| minor.parse::<u32>().ok())
                .map(|minor| (9..=14).contains(&minor));
            let (capturable, note) = match supported {
                Some(false) => (false, Some(format!("Python {version}: Leakscope captures CPython 3.9 to 3.14"))),
                _ => (true, None),
            };
            Some(RuntimeProcess {
                version: (version.contains('.')).then_some(version),
                capturable,
                note,
                ..listed_process(&f, "python", f[4])?
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listing_and_the_status_lines() {
        let found = parse_pythons("1\t1000\t1000\t3.11\t20480\tpython3 -u /app/leak.py\n7\t0\t0\t3.8\t100\tpython3.8 x.py\n");
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].pid, found[0].uid, found[0].rss_bytes), (1, 1000, Some(20480 << 10)));
        assert!(found[0].capturable && !found[1].capturable);
        assert!(found[1].note.as_deref().unwrap().contains("3.9 to 3.14"));
        let newer = parse_pythons("5\t0\t0\t3.14\t100\tpython3 a.py\n6\t0\t0\t3.15\t100\tpython3 b.py\n");
        assert!(newer[0].capturable && !newer[1].capturable);
        assert!(speaks_remote_debugging(Some("3.14")) && !speaks_remote_debugging(Some("3.13")) && !speaks_remote_debugging(None));
        let mut status = Status::default();
        assert!(status.read("leakscope: version 3.11").is_none());
        assert!(status.read("leakscope: stopped_ms 2").is_some());
        assert!(status.read("leakscope: paused_ms 105").is_none());
        assert_eq!((status.version.as_deref(), status.paused_ms), (Some("3.11"), Some(105)));
        assert!(looks_like_python("/usr/bin/python3 -u /app/leak.py") && looks_like_python("gunicorn app:app") && !looks_like_python("node x.js"));
    }
}
