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
//! client is then bollard over that socket, with one difference: bollard's
//! own unix client opens a connection per request, which here would be an ssh
//! handshake per request (one per container per sample), so this client keeps
//! idle connections for reuse, as the docker CLI's does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most this many `ssh` processes of one bridge are in their handshake at once: sshd
/// starts dropping unauthenticated connections beyond its `MaxStartups` (10 by default),
/// and a first sampling sweep asks for a connection per container at the same moment.
const HANDSHAKES_AT_ONCE: usize = 8;
/// A session whose engine has not answered by then gives its turn to the next one.
const HANDSHAKE_TURN: std::time::Duration = std::time::Duration::from_secs(15);

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

/// Idle connections (each an ssh session) kept for the next request, and for how long.
pub(crate) const IDLE_SESSIONS_KEPT: usize = 32;
const IDLE_SESSION_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A bollard client for `ssh://…` that reuses its connections (see the module's comment).
pub fn docker(address: &str, timeout_secs: u64) -> Result<bollard::Docker, String> {
    let socket = local_socket(address)?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(IDLE_SESSIONS_KEPT)
        .pool_idle_timeout(IDLE_SESSION_KEPT_FOR)
        .build(hyperlocal::UnixConnector);
    let transport = move |request: bollard::BollardRequest| {
        let client = client.clone();
        let socket = socket.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
            parts.uri = hyperlocal::Uri::new(&socket, &path).into();
            client.request(bollard::BollardRequest::from_parts(parts, body)).await.map_err(bollard::errors::Error::from)
        }
    };
    bollard::Docker::connect_with_custom_transport(transport, Some("http://ssh-bridge"), timeout_secs, bollard::API_DEFAULT_VERSION)
        .map_err(|e| e.to_string())
}

/// The local socket that reaches `address` through ssh (made on first use).
fn local_socket(address: &str) -> Result<PathBuf, String> {
    let mut bridges = bridges().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bridge) = bridges.get(address) {
        return Ok(bridge.socket.clone());
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
    tokio::spawn(serve_bridge(listener, "ssh".into(), argv, last_error.clone()));
    bridges.insert(address.to_string(), Bridge { socket: socket.clone(), last_error, _dir: dir });
    Ok(socket)
}

/// What ssh last said when a connection through it failed (for error messages).
pub fn last_error(address: &str) -> Option<String> {
    let bridges = bridges().lock().unwrap_or_else(|e| e.into_inner());
    bridges.get(address).and_then(|b| b.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

async fn serve_bridge(listener: tokio::net::UnixListener, program: String, argv: Vec<String>, last_error: Arc<Mutex<Option<String>>>) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "the ssh bridge cannot accept");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(turn) = handshakes.clone().acquire_owned().await else { return };
        tokio::spawn(carry(stream, turn, program.clone(), argv.clone(), last_error.clone()));
    }
}

/// One connection: one `ssh … docker system dial-stdio`, bytes both ways until either side ends.
/// `turn` (a handshake slot) is given back with the engine's first bytes, or after `HANDSHAKE_TURN`.
async fn carry(mut stream: tokio::net::UnixStream, turn: OwnedSemaphorePermit, program: String, argv: Vec<String>, last_error: Arc<Mutex<Option<String>>>) {
    let spawned = tokio::process::Command::new(&program)
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
    let turn = Arc::new(Mutex::new(Some(turn)));
    let give_back = turn.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(HANDSHAKE_TURN).await;
        give_back.lock().unwrap_or_else(|e| e.into_inner()).take();
    });
    let mut remote = tokio::io::join(FirstBytesEndTurn { stdout, turn }, ClosingStdin(Some(stdin)));
    let said = tokio::spawn(async move {
        let mut text = String::new();
        let _ = (&mut stderr).take(4096).read_to_string(&mut text).await;
        text
    });
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut remote).await;
    drop(remote);
    timer.abort();
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
    let said = said.await.unwrap_or_default();
    let failed = !matches!(status, Ok(Ok(s)) if s.success());
    if failed && !said.trim().is_empty() {
        let line = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string();
        tracing::warn!(ssh = %line, "an ssh connection to an engine failed");
        *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
    }
}

/// ssh's stdout, which gives the handshake turn back once the engine has said something
/// (or the session ended).
struct FirstBytesEndTurn {
    stdout: tokio::process::ChildStdout,
    turn: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl AsyncRead for FirstBytesEndTurn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let read = Pin::new(&mut self.stdout).poll_read(cx, buf);
        if read.is_ready() {
            self.turn.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        read
    }
}

/// ssh's stdin, closed when the client is done writing. tokio's `ChildStdin::shutdown` does
/// nothing (a pipe closes only when dropped), so without this `dial-stdio` never learns that
/// the client hung up and every connection the HTTP pool drops would leave its ssh behind.
struct ClosingStdin(Option<tokio::process::ChildStdin>);

impl AsyncWrite for ClosingStdin {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(stdin) = self.0.as_mut() {
            if Pin::new(stdin).poll_flush(cx)?.is_pending() {
                return Poll::Pending;
            }
        }
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A bridge whose "ssh" is `cat`: what the client sends comes back, and the client's
    /// hang-up ends the process (it used to outlive every connection).
    #[tokio::test]
    async fn a_connection_the_client_ends_ends_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bridge.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let last_error: Arc<Mutex<Option<String>>> = Default::default();
        tokio::spawn(serve_bridge(listener, "cat".into(), vec![], last_error.clone()));
        // More connections than handshake turns, all at once: each is answered.
        let mut clients = Vec::new();
        for i in 0..3 * HANDSHAKES_AT_ONCE {
            let socket = socket.clone();
            clients.push(tokio::spawn(async move {
                let mut client = tokio::net::UnixStream::connect(&socket).await.unwrap();
                let said = format!("request {i}");
                client.write_all(said.as_bytes()).await.unwrap();
                client.shutdown().await.unwrap();
                let mut answer = String::new();
                tokio::time::timeout(std::time::Duration::from_secs(10), client.read_to_string(&mut answer))
                    .await
                    .expect("the session outlived the client's hang-up")
                    .unwrap();
                assert_eq!(answer, said);
            }));
        }
        for client in clients {
            client.await.unwrap();
        }
        assert_eq!(*last_error.lock().unwrap(), None);
    }

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
