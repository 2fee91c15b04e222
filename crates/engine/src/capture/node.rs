//! Node.js: node processes are listed from /proc; a snapshot is taken over
//! the process's inspector, which SIGUSR1 opens on 127.0.0.1:9229 inside the
//! container's own network namespace, and closed again right after. The
//! snapshot streams out on the exec's stdout as V8 writes it, straight into
//! the store: nothing is written inside the container.
//!
//! Our static helper does it (`leakscope-agent nodes`, `node-snapshot PID`);
//! where it cannot run (a noexec /tmp), the container's own node runs our
//! JavaScript twin of it, fed through exec stdin (`node - …`).

use std::time::Instant;

use leakscope_model::capture::RuntimeProcess;

use super::{said, status_line, JobChange, Capture, Produced, Recipe, StepResult};

/// The JavaScript twin of the helper's Node.js commands.
const NODE_CLIENT: &str = include_str!("node_client.js");

pub(super) struct Node;

#[async_trait::async_trait]
impl Recipe for Node {
    fn kind(&self) -> &'static str {
        "heap-snapshot"
    }

    async fn find(&self, capture: &mut Capture) -> StepResult<Vec<RuntimeProcess>> {
        let listed = match capture.helper.clone() {
            Some(helper) => {
                let mut argv = helper.prefix;
                argv.push("nodes".into());
                capture.exec(argv, "0:0").await?
            }
            None => {
                if !capture
                    .top_commands()
                    .await
                    .iter()
                    .any(|c| looks_like_node(c))
                {
                    return Ok(Vec::new());
                }
                let Some(node) = client_node(capture).await else {
                    return Err(format!(
                        "{} (the fallback for Node.js, Leakscope's script run by the container's own node, is not possible either: \
                         no node runs through exec)",
                        capture.helper_error.clone().unwrap_or_default()
                    ));
                };
                capture
                    .exec_with_input(
                        vec![node, "-".into(), "list".into()],
                        "0:0",
                        NODE_CLIENT.as_bytes(),
                    )
                    .await?
            }
        };
        if listed.exit_code != 0 {
            return Err(format!(
                "listing the node processes in the container failed: {}",
                said(&listed.stderr)
            ));
        }
        Ok(parse_nodes(&listed.stdout))
    }

    async fn produce(
        &self,
        capture: &mut Capture,
        process: &RuntimeProcess,
    ) -> StepResult<Produced> {
        let pid = process.pid.to_string();
        let (argv, input, recipe) = match capture.helper.clone() {
            Some(helper) => {
                let mut argv = helper.prefix;
                argv.extend(["node-snapshot".to_string(), pid]);
                (argv, &[][..], "node-inspector")
            }
            None => {
                let node = client_node(capture)
                    .await
                    .ok_or("no node runs through exec in this container")?;
                (
                    vec![node, "-".into(), pid],
                    NODE_CLIENT.as_bytes(),
                    "node-client",
                )
            }
        };
        capture
            .engine
            .update_job(&capture.job, |j| j.recipe = Some(recipe.into()));
        let (tx, stager) = capture.stager();
        let mut status = Status::default();
        let (engine, job) = (capture.engine.clone(), capture.job.clone());
        let started = Instant::now();
        // Signals, the inspector and /proc/<pid>/fd need the process's own user.
        let user = format!("{}:{}", process.uid, process.gid);
        let streamed = capture
            .stream_command(argv, &user, input, tx, &mut |line| {
                if let Some(change) = status.read(line) {
                    engine.update_job(&job, change);
                }
            })
            .await;
        let staged = stager
            .await
            .map_err(|e| format!("storing the snapshot: {e}"))?;
        // What the helper said explains a staging error (a cut stream), so it comes first.
        let output = streamed?;
        if output.exit_code != 0 {
            let why = said(&output.stderr);
            return Err(if why.is_empty() {
                format!(
                    "the snapshot stopped (exit {}): did the container or node {} stop?",
                    output.exit_code, process.pid
                )
            } else {
                why
            });
        }
        let staged = staged.map_err(|e| format!("storing the snapshot: {e}"))?;
        if staged.format != "v8" {
            return Err(format!(
                "node {} sent something that is not a V8 heap snapshot",
                process.pid
            ));
        }
        tracing::info!(job = %capture.job, ms = started.elapsed().as_millis() as u64, bytes = staged.size_bytes, "node snapshot streamed");
        let runtime = status
            .version
            .map(|v| format!("node {v}"))
            .unwrap_or_else(|| "node".into());
        Ok(Produced {
            staged,
            runtime,
            pause_ms: status.paused_ms,
        })
    }

    fn needs_headroom(&self) -> bool {
        true
    }
}

fn looks_like_node(command: &str) -> bool {
    command
        .split_whitespace()
        .next()
        .and_then(|first| first.rsplit('/').next())
        .is_some_and(|n| n == "node" || n == "nodejs")
}

/// The container's own node that runs our script through exec, if any.
async fn client_node(capture: &mut Capture) -> Option<String> {
    let mut candidates = capture.runtime_candidates("node").await;
    candidates.extend(capture.runtime_candidates("nodejs").await);
    for node in candidates {
        let ran = capture
            .exec(vec![node.clone(), "--version".into()], "0:0")
            .await;
        if ran.is_ok_and(|o| o.exit_code == 0 && o.stdout.starts_with('v')) {
            return Some(node);
        }
    }
    None
}

/// What the helper's status lines told so far.
#[derive(Default)]
struct Status {
    version: Option<String>,
    paused_ms: Option<u64>,
    copying: bool,
}


impl Status {
    /// Reads one `leakscope: <word> <values>` line; returns the job's update.
    fn read(&mut self, line: &str) -> Option<JobChange> {
        let (word, values) = status_line(line)?;
        match word {
            "opened" => Some(Box::new(|j| {
                j.inspector = Some("opened for the snapshot (SIGUSR1); being closed again".into())
            })),
            "reused" => Some(Box::new(|j| {
                j.inspector =
                    Some("already open (started with --inspect); used and left open".into())
            })),
            "closed" => Some(Box::new(|j| {
                j.inspector = Some("opened for the snapshot (SIGUSR1) and closed again".into())
            })),
            "version" => {
                self.version = (values != "-").then(|| values.to_string());
                None
            }
            "paused_ms" => {
                self.paused_ms = values.parse().ok();
                None
            }
            "progress" => {
                let mut numbers = values
                    .split_whitespace()
                    .filter_map(|v| v.parse::<u64>().ok());
                let (done, total) = (numbers.next()?, numbers.next()?);
                // V8 reports building the graph; serialising (the copy) follows.
                let copying = total > 0 && done >= total && !self.copying;
                self.copying |= copying;
                Some(Box::new(move |j| {
                    j.objects_done = Some(done);
                    j.objects_total = Some(total);
                    if copying {
                        j.stage = "copying".into();
                    }
                }))
            }
            _ => None,
        }
    }
}

/// `nodes` lines: pid uid gid inspector sigusr1 rss_kib command (tab-separated).
fn parse_nodes(text: &str) -> Vec<RuntimeProcess> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(7, '\t').collect();
            if f.len() < 7 {
                return None;
            }
            let pid = f[0].parse().ok()?;
            let (inspect_flag, sigusr1) = (f[3] == "flag", f[4] == "enabled");
            let note = if inspect_flag {
                Some("started with --inspect: its open inspector is used, and left open".to_string())
            } else if !sigusr1 {
                Some(format!(
                    "node {pid} was started with --disable-sigusr1, so its inspector cannot be opened from outside; \
                     start it with --inspect=127.0.0.1:9229 instead"
                ))
            } else {
                None
            };
            Some(RuntimeProcess {
                pid,
                uid: f[1].parse().ok()?,
                gid: f[2].parse().ok()?,
                runtime: "node".into(),
                version: None,
                rss_bytes: f[5].parse::<u64>().ok().map(|kib| kib << 10),
                tool: None,
                capturable: sigusr1 || inspect_flag,
                note,
                command: f[6].to_string(),
                kinds: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_node_listing_and_the_status_lines() {
        let nodes = parse_nodes("1\t1000\t1000\t-\tenabled\t51200\tnode /app/leak.js\n9\t0\t0\t-\tdisabled\t100\tnode --disable-sigusr1 x.js\n");
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            (nodes[0].pid, nodes[0].uid, nodes[0].rss_bytes),
            (1, 1000, Some(51200 << 10))
        );
        assert!(nodes[0].capturable && !nodes[1].capturable);
        assert!(nodes[1]
            .note
            .as_deref()
            .unwrap()
            .contains("--disable-sigusr1"));
        let mut status = Status::default();
        assert!(status.read("leakscope: version v18.19.0").is_none());
        assert!(status.read("leakscope: paused_ms 633").is_none());
        assert!(status.read("leakscope: progress 10 100").is_some());
        assert!(status.read("Debugger attached.").is_none());
        assert_eq!(
            (status.version.as_deref(), status.paused_ms),
            (Some("v18.19.0"), Some(633))
        );
        assert_eq!(
            said("leakscope: opened 9229\nleakscope-error: port 9229 is taken\n"),
            "port 9229 is taken"
        );
        assert!(
            looks_like_node("/usr/bin/node /app/leak.js")
                && looks_like_node("nodejs x")
                && !looks_like_node("nodemon")
        );
    }
}
