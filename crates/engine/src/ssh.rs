//! `ssh://[user@]host[:port]` engines, reached as the docker CLI reaches them:
//! every connection is this machine's `ssh` running `docker system
//! dial-stdio` on the host, so the user's ssh setup (keys, agent, known
//! hosts, jump hosts) applies unchanged.
//!
//! Written here rather than taken from bollard's `ssh` feature: that one
//! drops the port of the address (`ssh://u@h:2222` asks ssh for a host named
//! `h:2222`) and keeps an ssh master per connection. Here each address gets a
//! private unix socket (in a 0700 directory of its own), and each connection
//! to it starts one `ssh` whose stdin and stdout carry the engine's HTTP; the
//! client is then an ordinary `unix://` one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::AsyncReadExt;

/// One bridge per address for the life of the process; `last_error` is what ssh last said
/// when it failed, for the engine's error text.
struct Bridge {
    socket: PathBuf,
    last_error: Arc<Mutex<Option<String>>>,
    _dir: tempfile::TempDir,
}

fn bridges() -> &'static Mutex<HashMap<String, Bridge>> {
    static BRIDGES: OnceLock<Mutex<HashMap<String, Bridge>>> = OnceLock::new();
    BRIDGES.get_or_init(Default::default)
}

/// `ssh://[user@]host[:port]` → (user, host, port).
pub fn parse(address: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let rest = address.strip_prefix("ssh://").ok_or_else(|| format!("{address}: not an ssh:// address"))?;
    let rest = rest.trim_end_matches('/');
    let (user, host_port) = match rest.rsplit_once('@') {
        Some((user, hp)) => (Some(user.to_string()), hp),
        None => (None, rest),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            let port = port.parse::<u16>().map_err(|_| format!("{address}: {port} is not a port"))?;
            (host.trim_matches(['[', ']']).to_string(), Some(port))
        }
        _ => (host_port.trim_matches(['[', ']']).to_string(), None),
    };
    // ssh would take a host starting with '-' for an option.
    if host.is_empty() || host.starts_with('-') || user.as_deref().is_some_and(|u| u.is_empty() || u.starts_with('-')) || rest.contains('/') {
        return Err(format!("{address}: expected ssh://[user@]host[:port]"));
    }
    Ok((user, host, port))
}

/// The `unix://` address that reaches `address` through ssh (made on first use).
pub fn local_address(address: &str) -> Result<String, String> {
    let mut bridges = bridges().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bridge) = bridges.get(address) {
        return Ok(format!("unix://{}", bridge.socket.display()));
    }
    let (user, host, port) = parse(address)?;
    let dir = tempfile::Builder::new().prefix("leakscope-ssh-").tempdir().map_err(|e| format!("{address}: cannot make the ssh bridge's directory: {e}"))?;
    let socket = dir.path().join("docker.sock");
    let std_listener = std::os::unix::net::UnixListener::bind(&socket).map_err(|e| format!("{address}: cannot listen on {}: {e}", socket.display()))?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::UnixListener::from_std(std_listener).map_err(|e| e.to_string())?;
    let last_error: Arc<Mutex<Option<String>>> = Default::default();
    let mut argv: Vec<String> = vec!["-o".into(), "BatchMode=yes".into(), "-o".into(), "ConnectTimeout=10".into()];
    if let Some(port) = port {
        argv.extend(["-p".into(), port.to_string()]);
    }
    if let Some(user) = user {
        argv.extend(["-l".into(), user]);
    }
    argv.extend(["--".into(), host, "docker".into(), "system".into(), "dial-stdio".into()]);
    tokio::spawn(serve_bridge(listener, argv, last_error.clone()));
    let local = format!("unix://{}", socket.display());
    bridges.insert(address.to_string(), Bridge { socket, last_error, _dir: dir });
    Ok(local)
}

/// What ssh last said when a connection through it failed (for error messages).
pub fn last_error(address: &str) -> Option<String> {
    let bridges = bridges().lock().unwrap_or_else(|e| e.into_inner());
    bridges.get(address).and_then(|b| b.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

async fn serve_bridge(listener: tokio::net::UnixListener, argv: Vec<String>, last_error: Arc<Mutex<Option<String>>>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "the ssh bridge cannot accept");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        tokio::spawn(carry(stream, argv.clone(), last_error.clone()));
    }
}

/// One connection: one `ssh … docker system dial-stdio`, bytes both ways until either side ends.
async fn carry(mut stream: tokio::net::UnixStream, argv: Vec<String>, last_error: Arc<Mutex<Option<String>>>) {
    let spawned = tokio::process::Command::new("ssh")
        .args(&argv)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("cannot run ssh: {e}"));
            return;
        }
    };
    let (Some(stdin), Some(stdout), Some(mut stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else { return };
    let mut remote = tokio::io::join(stdout, stdin);
    let said = tokio::spawn(async move {
        let mut text = String::new();
        let _ = (&mut stderr).take(4096).read_to_string(&mut text).await;
        text
    });
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut remote).await;
    drop(remote);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
    let said = said.await.unwrap_or_default();
    let failed = !matches!(status, Ok(Ok(s)) if s.success());
    if failed && !said.trim().is_empty() {
        let line = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string();
        tracing::warn!(ssh = %line, "an ssh connection to an engine failed");
        *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn addresses() {
        assert_eq!(parse("ssh://root@db-1:2222").unwrap(), (Some("root".into()), "db-1".into(), Some(2222)));
        assert_eq!(parse("ssh://db-1").unwrap(), (None, "db-1".into(), None));
        assert_eq!(parse("ssh://me@[fe80::1]:22").unwrap(), (Some("me".into()), "fe80::1".into(), Some(22)));
        assert!(parse("ssh://-oProxyCommand=x").is_err());
        assert!(parse("ssh://db-1:port").is_err());
        assert!(parse("ssh://db-1/path").is_err());
    }
}
