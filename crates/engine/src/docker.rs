//! Talking to the Docker engine: where it is, connecting as the docker CLI
//! does, and turning engine answers into our records.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder, StatsOptionsBuilder};
use bollard::Docker;
use futures::StreamExt;

use crate::memory::MemoryReading;
use crate::store::ContainerRecord;

pub const DEFAULT_ADDRESS: &str = "unix:///var/run/docker.sock";
/// Requests (not streams) that take longer than this are treated as a sick engine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The address the docker CLI would use: an explicit one, else `DOCKER_HOST`, else the local socket.
pub fn resolve_address(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string())
}

/// A connected engine: the client (API version negotiated once) and what it said about itself.
#[derive(Clone)]
pub struct Connection {
    pub docker: Docker,
    pub engine_version: String,
    pub api_version: String,
    /// The engine's name for its host (`docker info`'s `Name`).
    pub host_name: String,
}

/// Connects and negotiates the API version. `DOCKER_TLS_VERIFY` and
/// `DOCKER_CERT_PATH` select TLS for `tcp://` addresses, as with the docker CLI.
pub async fn connect(address: &str) -> Result<Connection, String> {
    connect_with(address, None).await
}

/// As `connect`; with `cert_dir`, a `tcp://` engine is reached over TLS with that
/// directory's `ca.pem` (the engine's certificate must be signed by it) and the
/// client's `cert.pem`/`key.pem`, as `docker --tlsverify` does.
pub async fn connect_with(address: &str, cert_dir: Option<&Path>) -> Result<Connection, String> {
    if let Some(problem) = local_socket_problem(address) {
        return Err(problem);
    }
    let docker = match cert_dir {
        Some(dir) => {
            if !(address.starts_with("tcp://") || address.starts_with("https://")) {
                return Err(format!("{address}: certificates ({}) are for tcp:// engines only", dir.display()));
            }
            for file in ["ca.pem", "cert.pem", "key.pem"] {
                if !dir.join(file).is_file() {
                    return Err(format!("{address}: no {file} in the certificate directory {}", dir.display()));
                }
            }
            let api = bollard::API_DEFAULT_VERSION;
            Docker::connect_with_ssl(address, &dir.join("key.pem"), &dir.join("cert.pem"), &dir.join("ca.pem"), REQUEST_TIMEOUT.as_secs(), api)
                .map_err(|e| e.to_string())
        }
        None if address.starts_with("ssh://") => crate::ssh::docker(address, REQUEST_TIMEOUT.as_secs()),
        None => Docker::connect_with_host(address).map_err(|e| e.to_string()),
    }
    .map_err(|e| format!("cannot use address {address}: {e}"))?
    .with_timeout(REQUEST_TIMEOUT);
    let docker = docker.negotiate_version().await.map_err(|e| describe_error(address, &e))?;
    let version = docker.version().await.map_err(|e| describe_error(address, &e))?;
    // Only the host's name: an engine slow to count its images (info walks them) must not
    // fail the connection, so a failed or slow answer falls back to the address's host.
    let name = match tokio::time::timeout(std::time::Duration::from_secs(5), docker.info()).await {
        Ok(Ok(info)) => info.name.filter(|n| !n.is_empty()),
        _ => None,
    };
    Ok(Connection {
        host_name: name.unwrap_or_else(|| host_of_address(address)),
        engine_version: version.version.unwrap_or_else(|| "unknown".into()),
        api_version: docker.client_version().to_string(),
        docker,
    })
}

/// `--docker-host [NAME=]URL`: the display name given, and the address.
pub fn split_named_address(value: &str) -> (Option<String>, String) {
    match value.split_once('=') {
        // `=` before any `://`: a name (URLs may carry `=` in their query, never in the scheme).
        Some((name, url)) if !name.contains("://") && !name.trim().is_empty() => (Some(name.trim().to_string()), url.trim().to_string()),
        _ => (None, value.trim().to_string()),
    }
}

/// A host name for an engine that has not told its own: this machine's for a
/// local socket, else the address's host.
pub fn host_of_address(address: &str) -> String {
    if address.starts_with("unix://") || address.starts_with("npipe://") {
        return std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    }
    let rest = address.split("://").nth(1).unwrap_or(address);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    match host_port.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.trim_matches(['[', ']']).to_string(),
        _ => host_port.to_string(),
    }
}

/// Engine errors in words a person can act on: for the local socket, say whether it is missing or forbidden.
pub fn describe_error(address: &str, error: &bollard::errors::Error) -> String {
    if let Some(problem) = local_socket_problem(address) {
        return problem;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    // Through ssh the client only sees the pipe close: say what ssh said.
    if let Some(said) = address.starts_with("ssh://").then(|| crate::ssh::last_error(address)).flatten() {
        text = format!("over ssh: {said}");
    }
    text
}

/// For a `unix://` address: why its socket cannot be used (missing,
/// forbidden, nobody listening), or `None` when it answers.
fn local_socket_problem(address: &str) -> Option<String> {
    let path = Path::new(address.strip_prefix("unix://")?);
    if let Err(e) = std::fs::metadata(path) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Some(format!("socket {} does not exist; is dockerd running?", path.display()));
        }
    }
    let e = std::os::unix::net::UnixStream::connect(path).err()?;
    Some(match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied on {}; run Leakscope as a member of the docker group or as root",
            path.display()
        ),
        std::io::ErrorKind::ConnectionRefused => format!("nothing listens on {}; is dockerd running?", path.display()),
        _ => format!("cannot connect to {}: {e}", path.display()),
    })
}

/// Ids of all containers, running or not.
pub async fn list_container_ids(docker: &Docker) -> Result<Vec<String>, bollard::errors::Error> {
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let list = docker.list_containers(Some(options)).await?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Inspects one container; `Ok(None)` when it no longer exists.
pub async fn inspect(docker: &Docker, id: &str) -> Result<Option<ContainerRecord>, bollard::errors::Error> {
    match docker.inspect_container(id, None::<InspectContainerOptions>).await {
        Ok(response) => Ok(record_from_inspect(response)),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Our record of a container from its inspect answer; `None` when the answer lacks an id.
pub fn record_from_inspect(response: ContainerInspectResponse) -> Option<ContainerRecord> {
    let id = response.id?;
    let config = response.config.unwrap_or_default();
    let labels: HashMap<String, String> = config.labels.unwrap_or_default();
    let state = response
        .state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    // HostConfig.Memory == 0 means no limit (stats then report host RAM).
    let limit_bytes = response
        .host_config
        .and_then(|h| h.memory)
        .filter(|&m| m > 0)
        .map(|m| m as u64);
    Some(ContainerRecord {
        name: response
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.chars().take(12).collect()),
        image: config.image.unwrap_or_default(),
        compose_project: labels.get("com.docker.compose.project").cloned(),
        compose_service: labels.get("com.docker.compose.service").cloned(),
        state,
        limit_bytes,
        capture_label: labels.get(crate::autocapture::CAPTURE_LABEL).cloned(),
        id,
    })
}

/// One reading through the Engine API (`stream=false&one-shot=true`).
pub async fn api_reading(docker: &Docker, id: &str) -> Result<Option<MemoryReading>, bollard::errors::Error> {
    let options = StatsOptionsBuilder::default().stream(false).one_shot(true).build();
    match docker.stats(id, Some(options)).next().await {
        Some(Ok(stats)) => Ok(MemoryReading::from_api(&stats)),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_host_may_carry_a_display_name() {
        assert_eq!(split_named_address("build-7=tcp://10.0.0.7:2376"), (Some("build-7".into()), "tcp://10.0.0.7:2376".into()));
        assert_eq!(split_named_address("unix:///var/run/docker.sock"), (None, "unix:///var/run/docker.sock".into()));
        assert_eq!(split_named_address("ssh://deploy@db-1?x=1"), (None, "ssh://deploy@db-1?x=1".into()));
    }

    #[test]
    fn a_remote_engine_is_named_by_its_address() {
        assert_eq!(host_of_address("tcp://build-7.example:2376"), "build-7.example");
        assert_eq!(host_of_address("ssh://deploy@db-1"), "db-1");
        assert_eq!(host_of_address("tcp://[fd00::5]:2375"), "fd00::5");
        assert!(!host_of_address("unix:///var/run/docker.sock").is_empty());
    }

    #[test]
    fn inspect_without_limit_reports_none() {
        let json = r#"{"Id":"abc","Name":"/web","State":{"Status":"running"},
            "HostConfig":{"Memory":0},"Config":{"Image":"nginx","Labels":{"com.docker.compose.service":"web"}}}"#;
        let response: ContainerInspectResponse = serde_json::from_str(json).unwrap();
        let record = record_from_inspect(response).unwrap();
        assert_eq!(record.name, "web");
        assert_eq!(record.limit_bytes, None);
        assert_eq!(record.compose_service.as_deref(), Some("web"));
        assert_eq!(record.state, "running");
    }

    #[test]
    fn address_prefers_explicit_then_env() {
        assert_eq!(resolve_address(Some("tcp://1.2.3.4:2375")), "tcp://1.2.3.4:2375");
    }

    #[test]
    fn missing_socket_is_described_plainly() {
        let err = bollard::errors::Error::DockerResponseServerError { status_code: 500, message: "x".into() };
        let text = describe_error("unix:///nonexistent/docker.sock", &err);
        assert!(text.contains("does not exist"), "{text}");
    }
}
