//! Java: JVMs are listed by our helper from /proc; a dump is written by the
//! image's own `jcmd` when it has one, else by our helper speaking HotSpot's
//! attach protocol, else (a noexec /tmp) by our jar on the container's own
//! java; the file is then streamed out and removed.

use std::time::Instant;

use leakscope_model::capture::RuntimeProcess;

use super::{Capture, Helper, Produced, Recipe, StepResult, CONTAINER_DIR};

pub(super) struct Java;

#[async_trait::async_trait]
impl Recipe for Java {
    fn kind(&self) -> &'static str {
        "heap-dump"
    }

    async fn find(&self, capture: &mut Capture) -> StepResult<Vec<RuntimeProcess>> {
        let helper = match capture.helper.clone() {
            Some(helper) => helper,
            // Without our helper, only try the jar when a java process is there.
            None if !capture.top_commands().await.iter().any(|c| looks_like_java(c)) => return Ok(Vec::new()),
            None => install_java_client(capture).await.map_err(|java| {
                format!(
                    "{} (the fallback for Java, Leakscope's attach client run by the container's own java, is not possible either: {java})",
                    capture.helper_error.clone().unwrap_or_default()
                )
            })?,
        };
        let mut argv = helper.prefix.clone();
        argv.push("jvms".into());
        let output = capture.exec(argv, "0:0").await?;
        if output.exit_code != 0 {
            return Err(format!(
                "listing the JVMs in the container failed: {}",
                output.stderr.trim()
            ));
        }
        capture.java_client = (helper.recipe != "agent").then_some(helper);
        Ok(parse_jvms(&output.stdout))
    }

    async fn produce(&self, capture: &mut Capture, jvm: &RuntimeProcess) -> StepResult<Produced> {
        let path = format!("{CONTAINER_DIR}/leakscope-{}.hprof", capture.job);
        capture.placed.push(path.clone());
        let client = capture
            .java_client
            .clone()
            .or_else(|| capture.helper.clone());
        let recipe = if jvm.tool.is_some() {
            "jcmd"
        } else {
            client.as_ref().map(|h| h.recipe).unwrap_or("agent")
        };
        capture
            .engine
            .update_job(&capture.job, |j| j.recipe = Some(recipe.into()));
        let user = format!("{}:{}", jvm.uid, jvm.gid);
        let pid = jvm.pid.to_string();
        let argv = match (&jvm.tool, client) {
            (Some(jcmd), _) => vec![jcmd.clone(), pid, "GC.heap_dump".into(), path.clone()],
            (None, Some(client)) => {
                let mut argv = client.prefix;
                argv.extend(["dump".to_string(), pid, path.clone()]);
                argv
            }
            (None, None) => return Err("no way to ask this JVM for a dump: the image has no jcmd and our helper does not run here".into()),
        };
        // The JVM stops at a safepoint for as long as it writes the dump.
        let dumping = Instant::now();
        let output = capture.exec(argv, &user).await?;
        let pause_ms = dumping.elapsed().as_millis() as u64;
        // jcmd exits 0 even when the dump failed; its words are the only proof.
        if !output.stdout.contains("Heap dump file created") {
            let said = format!("{} {}", output.stdout.trim(), output.stderr.trim());
            return Err(format!(
                "the JVM did not write a heap dump ({recipe}, exit {}): {}",
                output.exit_code,
                said.trim()
            ));
        }
        let expected = dump_size(&output.stdout);
        capture
            .engine
            .update_job(&capture.job, |j| j.bytes_total = expected);

        capture.stage("copying");
        let staged = capture.copy_out(&path, expected).await?;
        if let Some(expected) = expected {
            if staged.size_bytes != expected {
                return Err(format!(
                    "the copy ended early: {} of {expected} bytes arrived (was the container stopped?)",
                    staged.size_bytes
                ));
            }
        }
        let runtime = jvm
            .version
            .as_deref()
            .map(|v| format!("java {v}"))
            .unwrap_or_else(|| "java".into());
        Ok(Produced {
            staged,
            runtime,
            pause_ms: Some(pause_ms),
        })
    }
}

fn looks_like_java(command: &str) -> bool {
    command
        .split_whitespace()
        .next()
        .is_some_and(|first| first == "java" || first.ends_with("/java"))
}

/// The jar needs no exec permission: `java -cp /tmp/x.jar` reads it.
async fn install_java_client(capture: &mut Capture) -> StepResult<Helper> {
    let Some(local) = capture
        .engine
        .inner
        .config
        .attach_jar_path
        .clone()
        .filter(|p| p.is_file())
    else {
        return Err("its jar was not built (the build needs a JDK's javac)".into());
    };
    let jar = tokio::fs::read(&local)
        .await
        .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
    let path = format!("{CONTAINER_DIR}/.leakscope-attach-{}.jar", capture.job);
    capture.placed.push(path.clone());
    capture.copy_in(&path, &jar, false).await?;
    for java in capture.runtime_candidates("java").await {
        // Small and quick: this JVM shares the container's memory limit.
        let prefix = [
            java.as_str(),
            "-Xmx24m",
            "-Xss512k",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-cp",
            &path,
            "LeakscopeAttach",
        ];
        let helper = Helper {
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            recipe: "java-attach",
        };
        if capture.helper_runs(&helper).await? {
            return Ok(helper);
        }
    }
    Err("no java runs in the container through exec (not on PATH, and no absolute java path in its processes)".into())
}

/// The helper's `jvms` lines: pid uid gid version jcmd attach command (tab-separated).
pub(super) fn parse_jvms(text: &str) -> Vec<RuntimeProcess> {
    let dash_is_none = |v: &str| (v != "-" && !v.is_empty()).then(|| v.to_string());
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(7, '\t').collect();
            if f.len() < 7 {
                return None;
            }
            let pid = f[0].parse().ok()?;
            let attach_enabled = f[5] == "enabled";
            let tool = dash_is_none(f[4]);
            let note = if !attach_enabled {
                Some(format!(
                    "JVM pid {pid} was started with -XX:+DisableAttachMechanism, so no tool can ask it for a heap dump; \
                     remove that flag (or add -XX:+HeapDumpOnOutOfMemoryError to get a dump when it runs out of memory)"
                ))
            } else {
                tool.as_ref().map(|jcmd| format!("dumped with the image's own {jcmd}"))
            };
            Some(RuntimeProcess {
                pid,
                uid: f[1].parse().ok()?,
                gid: f[2].parse().ok()?,
                runtime: "java".into(),
                version: dash_is_none(f[3]),
                rss_bytes: None,
                tool,
                capturable: attach_enabled,
                note,
                command: f[6].to_string(),
                kinds: Vec::new(),
            })
        })
        .collect()
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
        assert_eq!(
            (jvms[0].pid, jvms[0].uid, jvms[0].version.as_deref()),
            (1, 1000, Some("17.0.15"))
        );
        assert!(jvms[0].capturable);
        assert_eq!(jvms[1].tool.as_deref(), Some("/jdk/bin/jcmd"));
        assert!(!jvms[1].capturable);
        assert!(jvms[1]
            .note
            .as_deref()
            .unwrap()
            .contains("DisableAttachMechanism"));
        assert_eq!(jvms[1].command, "java\tX");
        assert_eq!(dump_size("Dumping heap to /tmp/x ...\nHeap dump file created [4779606 bytes in 0.016 secs]\n"), Some(4779606));
        assert!(looks_like_java("/opt/jdk/bin/java -jar x") && !looks_like_java("javascript"));
    }
}
