//! Our helper in a short-lived container of its own, beside the target: it
//! shares the target's PID and network namespaces, has every capability
//! dropped but CAP_SYS_PTRACE, a read-only root holding only the helper, and
//! is removed as soon as it exits. For the steps that need ptrace (a Python
//! snapshot): Docker's exec API cannot add one capability, and a privileged
//! exec would give the process every capability (engines that run without
//! some, as in many CI runners and nested setups, refuse it outright).
//!
//! The image (`leakscope-helper:<hash of the helper>`) is imported once from
//! the helper binary through the engine's API: no registry, nothing pulled.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{engine_failure, single_file_tar, Capture, ExecOutput, StepResult};
use crate::channel::Chunk;

const IMAGE_REPO: &str = "leakscope-helper";
const HELPER_IN_IMAGE: &str = "leakscope-agent";
/// Where the helper sees a folder the server shares with it.
pub const SHARED_IN_HELPER: &str = "/out";
/// Labels on every helper container: the job, and the container it works on
/// (so a crash's leftovers can be found and removed).
pub const HELPER_LABEL: &str = "io.leakscope.helper";
pub const HELPER_TARGET_LABEL: &str = "io.leakscope.helper.target";

impl Capture {
    /// The helper image, imported from our helper binary when the engine lacks it.
    async fn helper_image(&self) -> StepResult<String> {
        let Some(local) = self.engine.inner.config.agent_path.clone() else {
            return Err("Leakscope's capture helper was not built (run the build, or pass --agent)".into());
        };
        let binary = tokio::fs::read(&local)
            .await
            .map_err(|e| format!("cannot read the capture helper {}: {e}", local.display()))?;
        let tag = format!("{:x}", Sha256::digest(&binary))[..16].to_string();
        let image = format!("{IMAGE_REPO}:{tag}");
        if self.docker.inspect_image(&image).await.is_ok() {
            return Ok(image);
        }
        let tar = single_file_tar(HELPER_IN_IMAGE, &binary, 0o755).map_err(|e| format!("packing the helper: {e}"))?;
        let options = CreateImageOptionsBuilder::default().from_src("-").repo(IMAGE_REPO).tag(&tag).build();
        let mut import = self.docker.create_image(Some(options), Some(bollard::body_full(tar.into())), None);
        while let Some(step) = import.next().await {
            step.map_err(|e| engine_failure("importing Leakscope's helper image", &e))?;
        }
        Ok(image)
    }

    /// Creates the helper container for `args` and attaches to its output;
    /// `shared` is a folder of ours it sees as `/out` (when the engine runs on
    /// this machine: creating the container fails otherwise, and it is created without).
    async fn start_sidecar(&self, args: &[String], shared: Option<&std::path::Path>) -> StepResult<(String, super::ExecStream)> {
        match self.create_sidecar(args, shared).await {
            Err(why) if shared.is_some() => {
                tracing::info!(job = %self.job, %why, "the engine cannot share the folder with the helper; streaming instead");
                self.create_sidecar(args, None).await
            }
            other => other,
        }
    }

    async fn create_sidecar(&self, args: &[String], shared: Option<&std::path::Path>) -> StepResult<(String, super::ExecStream)> {
        let image = self.helper_image().await?;
        let name = format!("leakscope-helper-{}-{}", self.job, rand_suffix());
        let target = format!("container:{}", self.id());
        let mut cmd = vec![format!("/{HELPER_IN_IMAGE}")];
        cmd.extend(args.iter().cloned());
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            labels: Some(HashMap::from([
                (HELPER_LABEL.to_string(), self.job.clone()),
                (HELPER_TARGET_LABEL.to_string(), self.id().to_string()),
            ])),
            host_config: Some(HostConfig {
                pid_mode: Some(target.clone()),
                network_mode: Some(target),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(if self.sidecar_may_switch_user {
                    vec!["SYS_PTRACE".into(), "SETUID".into(), "SETGID".into()]
                } else {
                    vec!["SYS_PTRACE".into()]
                }),
                readonly_rootfs: Some(true),
                memory: Some(256 << 20),
                // A bind mount (not `binds`): it fails, rather than make up an empty folder, where the path is not the engine's.
                mounts: shared.map(|dir| {
                    vec![Mount {
                        target: Some(SHARED_IN_HELPER.into()),
                        source: Some(dir.display().to_string()),
                        typ: Some(MountType::BIND),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| engine_failure("creating Leakscope's helper container", &e))?;
        let attach = AttachContainerOptionsBuilder::default().stream(true).stdout(true).stderr(true).build();
        let attached = match self.docker.attach_container(&name, Some(attach)).await {
            Ok(a) => a,
            Err(e) => {
                self.remove_sidecar(&name).await;
                return Err(engine_failure("attaching to Leakscope's helper container", &e));
            }
        };
        if let Err(e) = self.docker.start_container(&name, None).await {
            self.remove_sidecar(&name).await;
            let why = e.to_string();
            if why.contains("caps") || why.contains("operation not permitted") {
                return Err(format!(
                    "the engine refused to start Leakscope's helper with CAP_SYS_PTRACE ({why}); this capture needs \
                     ptrace, for a moment, in a container beside the target"
                ));
            }
            return Err(engine_failure("starting Leakscope's helper container", &e));
        }
        Ok((name, attached.output))
    }

    async fn finish_sidecar(&self, name: &str) -> i64 {
        let mut wait = self.docker.wait_container(name, None::<WaitContainerOptions>);
        let mut code = -1;
        while let Some(result) = wait.next().await {
            match result {
                Ok(r) => code = r.status_code,
                // bollard reports a non-zero exit as an error carrying the code.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(_) => break,
            }
        }
        self.remove_sidecar(name).await;
        code
    }

    async fn remove_sidecar(&self, name: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        if let Err(e) = self.docker.remove_container(name, Some(options)).await {
            tracing::warn!(job = %self.job, container = name, error = %e, "could not remove Leakscope's helper container");
        }
    }

    /// Runs the helper beside the target; collects (bounded) stdout and stderr.
    pub(super) async fn sidecar_run(&self, args: &[String]) -> StepResult<ExecOutput> {
        const KEEP: usize = 1 << 20;
        let (name, mut output) = self.start_sidecar(args, None).await?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut failure = None;
        while let Some(item) = output.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdOut { message }) if stdout.len() < KEEP => stdout.extend_from_slice(&message),
                Ok(bollard::container::LogOutput::StdErr { message }) if stderr.len() < KEEP => stderr.extend_from_slice(&message),
                Ok(_) => {}
                Err(e) => {
                    failure = Some(engine_failure("reading Leakscope's helper", &e));
                    break;
                }
            }
        }
        let exit_code = self.finish_sidecar(&name).await;
        if let Some(why) = failure {
            return Err(why);
        }
        Ok(ExecOutput {
            exit_code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs the helper beside the target, its stdout streamed into `tx` (as `stream_command`).
    pub(super) async fn sidecar_stream(
        &self,
        args: &[String],
        shared: Option<&std::path::Path>,
        tx: mpsc::Sender<Chunk>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> StepResult<ExecOutput> {
        let (name, mut output) = self.start_sidecar(args, shared).await?;
        let (stderr, failure) = self.pump("Leakscope's helper", &mut output, &tx, on_line).await;
        drop(output);
        let exit_code = self.finish_sidecar(&name).await;
        if let Some(message) = failure {
            let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
            return Err(message);
        }
        if exit_code != 0 {
            let _ = tx.send(Err(std::io::Error::other(format!("the helper exited with {exit_code}")))).await;
        }
        Ok(ExecOutput { exit_code, stdout: String::new(), stderr })
    }
}

/// A few random hex digits, so two helpers of one job never share a name.
fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{:06x}", nanos & 0xff_ffff)
}
