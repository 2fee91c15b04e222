//! Node.js: find node processes under /proc, and take a heap snapshot of one
//! over its inspector (SIGUSR1 opens it on 127.0.0.1:9229 in the container's
//! own network namespace), streaming the snapshot to stdout as V8 writes it.
//! `crates/engine/src/capture/node_client.js` is the JavaScript twin of
//! `snapshot`, for containers whose /tmp is noexec; keep the two in step.
//!
//! Status lines go to stderr as `leakscope: <word> <values>`; the engine reads
//! them for progress and the record (version, pause).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procfs;

/// Where node opens its inspector on SIGUSR1.
const DEFAULT_PORT: u16 = 9229;

fn say(line: &str) {
    eprintln!("leakscope: {line}");
}

/// A node process: the executable or the command is named node or nodejs.
fn is_node(pid: i32, cmdline: &[String]) -> bool {
    let named = |p: &Path| p.file_name().is_some_and(|n| n == "node" || n == "nodejs");
    procfs::exe(pid, cmdline).as_deref().is_some_and(named)
        || cmdline.first().map(Path::new).is_some_and(named)
}

/// Command-line flags plus NODE_OPTIONS (readable for the process's own user).
fn flags(pid: i32, cmdline: &[String]) -> Vec<String> {
    let mut flags = cmdline.to_vec();
    if let Some(options) = procfs::env_var(pid, "NODE_OPTIONS") {
        flags.extend(options.split_whitespace().map(str::to_string));
    }
    flags
}

fn inspect_flag(flags: &[String]) -> bool {
    flags.iter().any(|f| f.starts_with("--inspect"))
}

/// `nodes`: pid uid gid inspector sigusr1 rss_kib command (tab-separated);
/// inspector is `flag` when started with --inspect, else `-`.
pub fn list() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    for pid in procfs::pids()? {
        let Some(cmdline) = procfs::cmdline(pid) else {
            continue;
        };
        if !is_node(pid, &cmdline) {
            continue;
        }
        let Some((uid, gid)) = procfs::ids(pid) else {
            continue;
        };
        let flags = flags(pid, &cmdline);
        let line = [
            pid.to_string(),
            uid.to_string(),
            gid.to_string(),
            if inspect_flag(&flags) { "flag" } else { "-" }.to_string(),
            if flags.iter().any(|f| f == "--disable-sigusr1") {
                "disabled"
            } else {
                "enabled"
            }
            .to_string(),
            procfs::rss_kib(pid).to_string(),
            cmdline.join(" ").replace(['\t', '\n'], " "),
        ]
        .join("\t");
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A small HTTP GET of the inspector's JSON endpoints (`/json/list`, `/json/version`).
fn get_json(port: u16, path: &str) -> Result<Value, String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if answer.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        };
        answer.extend_from_slice(&buffer[..n]);
        if answer.len() > 1 << 20 {
            return Err("answer too long".into());
        }
        // The inspector may keep the connection open: stop once the body is complete.
        if let Some(end) = find(&answer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| answer.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let end = find(&answer, b"\r\n\r\n").ok_or("not an HTTP answer")?;
    serde_json::from_slice(&answer[end + 4..]).map_err(|e| format!("not an inspector answer: {e}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The websocket URL of the process's own open inspector: a port it listens
/// on (its own socket, not a neighbour's) that answers `/json/list`.
fn open_inspector(pid: i32) -> Option<(u16, String)> {
    let own = procfs::socket_inodes(pid);
    procfs::listeners()
        .into_iter()
        .filter(|(inode, l)| own.contains(inode) && l.on_loopback)
        .find_map(|(_, l)| {
            let targets = get_json(l.port, "/json/list").ok()?;
            let url = targets
                .get(0)?
                .get("webSocketDebuggerUrl")?
                .as_str()?
                .to_string();
            Some((l.port, url))
        })
}

/// `node-snapshot PID`: run as the node process's own user.
pub fn snapshot(pid: i32) -> Result<(), String> {
    let cmdline =
        procfs::cmdline(pid).ok_or_else(|| format!("no process {pid} in this container"))?;
    let flags = flags(pid, &cmdline);
    let (port, url, opened) = match open_inspector(pid) {
        Some((port, url)) => {
            say(&format!("reused {port}"));
            (port, url, false)
        }
        None => {
            let (port, url) = open(pid, &flags)?;
            say(&format!("opened {port}"));
            (port, url, true)
        }
    };
    let version = get_json(port, "/json/version").ok();
    let version = version
        .as_ref()
        .and_then(|v| v.get("Browser")?.as_str())
        .map(|b| b.trim_start_matches("node.js/").to_string());
    say(&format!("version {}", version.as_deref().unwrap_or("-")));
    let taken = take(pid, &url, opened);
    if opened {
        // Closed whatever happened: an open inspector is code execution for anyone in the container.
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_inspector(pid).is_some() {
            if Instant::now() > deadline {
                return Err(format!("node {pid}'s inspector is still open on port {port} after the snapshot; restart the process to close it"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        say("closed");
    }
    taken
}

/// Sends SIGUSR1 and waits for the inspector to listen.
fn open(pid: i32, flags: &[String]) -> Result<(u16, String), String> {
    if flags.iter().any(|f| f == "--disable-sigusr1") {
        return Err(format!(
            "node {pid} was started with --disable-sigusr1, so its inspector cannot be opened from outside; start it with --inspect=127.0.0.1:9229 instead"
        ));
    }
    if let Some((inode, _)) = procfs::listeners()
        .into_iter()
        .find(|(_, l)| l.port == DEFAULT_PORT)
    {
        return Err(format!(
            "port {DEFAULT_PORT}, where node opens its inspector on SIGUSR1, is already taken in this container (socket {inode}, not node {pid}'s); free it, or start node with --inspect=127.0.0.1:PORT"
        ));
    }
    // SAFETY: kill(2) with a pid and a signal number has no memory-safety requirements.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        return Err(format!(
            "cannot signal node {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = open_inspector(pid) {
            return Ok(found);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node {pid} did not open its inspector within 10 s of SIGUSR1: the application handles SIGUSR1 itself, or a policy (a permission model, a hardened build) blocks the inspector"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Takes the snapshot over the websocket, writing each chunk to stdout as it
/// arrives: a blocking write is the backpressure, nothing is held.
fn take(pid: i32, url: &str, close_after: bool) -> Result<(), String> {
    let address = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("odd inspector URL {url}"))?;
    let stream = TcpStream::connect(address)
        .map_err(|e| format!("connecting to the inspector at {address}: {e}"))?;
    let (mut socket, _) = tungstenite::client(url, stream)
        .map_err(|e| format!("the inspector refused the websocket: {e}"))?;
    let send = |socket: &mut tungstenite::WebSocket<TcpStream>, message: Value| {
        socket
            .send(tungstenite::Message::text(message.to_string()))
            .map_err(|e| format!("writing to the inspector: {e}"))
    };
    send(
        &mut socket,
        json!({"id": 1, "method": "HeapProfiler.takeHeapSnapshot", "params": {"reportProgress": true}}),
    )?;
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    loop {
        let message = socket.read().map_err(|e| {
            format!("node {pid} closed the inspector connection mid-snapshot (did it exit?): {e}")
        })?;
        let tungstenite::Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(text.as_str())
            .map_err(|e| format!("an odd inspector message: {e}"))?;
        match message.get("method").and_then(Value::as_str) {
            Some("HeapProfiler.addHeapSnapshotChunk") => {
                let chunk = message["params"]["chunk"].as_str().unwrap_or_default();
                out.write_all(chunk.as_bytes())
                    .map_err(|e| format!("writing the snapshot: {e}"))?;
            }
            Some("HeapProfiler.reportHeapSnapshotProgress") => {
                say(&format!(
                    "progress {} {}",
                    message["params"]["done"], message["params"]["total"]
                ));
            }
            _ if message.get("id").and_then(Value::as_u64) == Some(1) => {
                if let Some(error) = message.get("error") {
                    return Err(format!(
                        "the inspector refused the snapshot: {}",
                        error["message"]
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    out.flush()
        .map_err(|e| format!("writing the snapshot: {e}"))?;
    say(&format!("paused_ms {}", started.elapsed().as_millis()));
    if close_after {
        // Node stops its inspector and drops our connection itself; no close
        // frame from us, which raced with that stop and crashed Node 18.
        send(
            &mut socket,
            json!({"id": 2, "method": "Runtime.evaluate", "params": {"expression": "process._debugEnd(), 0"}}),
        )?;
        let _ = socket
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(3)));
        while socket.read().is_ok() {}
    } else {
        let _ = socket.close(None);
        let _ = socket.flush();
    }
    Ok(())
}
