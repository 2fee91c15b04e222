//! Python: find CPython processes under /proc, and take a heap snapshot of one
//! by making the interpreter run Leakscope's walk (`walk.py`) on its own main
//! thread, at a point where running Python code is safe, with nothing
//! installed in the image and nothing written into the container.
//!
//! How (CPython 3.9 to 3.13, x86_64): ptrace stops only the main thread for a
//! moment (`inject.rs`): a fresh anonymous page gets the bootstrap source, and
//! a call of `Py_AddPendingCall(PyRun_SimpleString, page)` queues it — the
//! documented way to ask an interpreter to run something "as soon as
//! possible" from any thread; both symbols come from the interpreter's own
//! ELF. The thread goes on; at its next bytecode boundary it runs the walk,
//! which connects back to us over loopback and streams its records; we relay
//! them to stdout. Afterwards the page is unmapped again.
//!
//! CPython 3.14 has a documented way for this (PEP 768), so there no thread
//! is stopped and nothing is mapped into the process (`remote_debug.rs`): the
//! bootstrap is handed over as a script path the interpreter opens itself.
//!
//! Status lines go to stderr as `leakscope: <word> <values>` (version, waiting,
//! walking, paused_ms); the engine reads them for progress and the record.

mod inject;
mod remote_debug;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::procfs;

/// The walk itself, sent as the bootstrap's payload.
const WALK: &str = include_str!("walk.py");

fn say(line: &str) {
    eprintln!("leakscope: {line}");
}

/// `3.11` from `python3.11`, `libpython3.11.so.1.0`.
fn version_in_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("libpython").or_else(|| name.strip_prefix("python"))?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let digits = digits.trim_end_matches('.');
    (digits.contains('.')).then(|| digits.to_string())
}

/// The interpreter's version when its executable or libpython names it.
fn interpreter(pid: i32, cmdline: &[String]) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let from_lib = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| Path::new(p).file_name()?.to_str())
        .find_map(version_in_name);
    let exe = procfs::exe(pid, cmdline);
    let from_exe = exe.as_deref().and_then(|p| p.file_name()?.to_str()).and_then(version_in_name);
    let named_python = exe
        .as_deref()
        .and_then(|p| p.file_name()?.to_str())
        .or_else(|| cmdline.first().and_then(|c| Path::new(c).file_name()?.to_str()))
        .is_some_and(|n| n.starts_with("python"));
    from_lib.or(from_exe).or_else(|| named_python.then(|| "3".to_string()))
}

/// `pythons`: pid uid gid version rss_kib command (tab-separated).
pub fn list() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    for pid in procfs::pids()? {
        let Some(cmdline) = procfs::cmdline(pid) else { continue };
        let Some(version) = interpreter(pid, &cmdline) else { continue };
        let Some((uid, gid)) = procfs::ids(pid) else { continue };
        let line = [
            pid.to_string(),
            uid.to_string(),
            gid.to_string(),
            version,
            procfs::rss_kib(pid).to_string(),
            cmdline.join(" ").replace(['\t', '\n'], " "),
        ]
        .join("\t");
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// 32 hex digits from the kernel's random pool: only our walk may connect.
fn token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The source PyRun_SimpleString runs in `__main__`: one expression, so it
/// leaves no name behind; the walk gets its own globals.
fn bootstrap(port: u16, token: &str, timeout_secs: u64) -> String {
    let hex: String = WALK.bytes().map(|b| format!("{b:02x}")).collect();
    format!(
        "exec(compile(bytes.fromhex('{hex}').decode(), '<leakscope>', 'exec'), \
         {{'__builtins__': __builtins__, '_LS': ({port}, '{token}', {timeout_secs})}})\n"
    )
}

/// `python-snapshot PID [SECONDS]`: the heap snapshot of PID, to stdout.
pub fn snapshot(pid: i32, timeout_secs: u64) -> Result<(), String> {
    let cmdline = procfs::cmdline(pid).ok_or_else(|| format!("process {pid} is gone"))?;
    let version = interpreter(pid, &cmdline).ok_or_else(|| format!("process {pid} is not a CPython interpreter"))?;
    say(&format!("version {version}"));
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listening on loopback: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let token = token()?;
    let source = bootstrap(port, &token, timeout_secs);
    let result = match remote_debug::minor_version(&version) {
        Some(v) if remote_debug::speaks(v) => through_remote_debugging(pid, &source, &listener, &token, timeout_secs),
        _ => through_pending_call(pid, &source, &listener, &token, timeout_secs),
    };
    let paused_us = result?;
    say(&format!("paused_ms {}", paused_us / 1000));
    Ok(())
}

/// CPython 3.14: the bootstrap as a script the interpreter runs at its next safe point.
fn through_remote_debugging(pid: i32, source: &str, listener: &TcpListener, token: &str, timeout_secs: u64) -> Result<u64, String> {
    let (uid, gid) = procfs::ids(pid).ok_or_else(|| format!("process {pid} is gone"))?;
    let script = remote_debug::Script::serve(source.as_bytes(), uid, gid)?;
    let request = remote_debug::request(pid, script.path())?;
    say("queued");
    let result = receive(listener, token, timeout_secs);
    if result.is_err() {
        // Not run yet (or failed): take the request back so that it does not run later.
        request.withdraw();
    }
    // The walk has read the script by the time it connects; the holder goes now.
    drop(script);
    result
}

/// CPython 3.9 to 3.13: the bootstrap queued with Py_AddPendingCall through ptrace.
fn through_pending_call(pid: i32, source: &str, listener: &TcpListener, token: &str, timeout_secs: u64) -> Result<u64, String> {
    let symbols = inject::Symbols::find(pid)?;
    let page = inject::queue_pending_call(pid, &symbols, source.as_bytes())?;
    say("queued");
    // The main thread runs it at its next bytecode boundary: at once, unless it is
    // blocked in a C call (sleep, a socket read), then when that returns.
    let result = receive(listener, token, timeout_secs);
    match &result {
        Ok(_) => {
            // The walk has run: its source page is no longer read; give it back.
            if let Err(e) = inject::unmap(pid, &page) {
                say(&format!("warning could not unmap the bootstrap page: {e}"));
            }
        }
        Err(_) => {
            // Still queued: the interpreter reads the page when it gets there, so
            // it must stay until then; make what it runs a no-op. The queued
            // shmdt then drops the page (without shmdt, one page stays mapped).
            let _ = inject::neutralise(pid, &page);
            if !page.detaches_itself() {
                say("warning one 4 KiB page stays mapped in the process until it exits");
            }
        }
    }
    result
}

/// Accepts our walk's connection and relays its records to stdout; returns the
/// time the walk held the interpreter, from its end record.
fn receive(listener: &TcpListener, token: &str, timeout_secs: u64) -> Result<u64, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(s) = check_token(stream, token) {
                    break s;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() > Duration::from_secs(timeout_secs) {
                    return Err(format!(
                        "the interpreter did not start the walk within {timeout_secs} s: its main thread has not run Python code \
                         since (blocked in a C call, or the process is stopped); the walk stays queued as a no-op and nothing was captured"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("accepting the walk's connection: {e}")),
        }
    };
    say("walking");
    stream.set_read_timeout(Some(Duration::from_secs(timeout_secs.max(30)))).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut buffer = vec![0u8; 1 << 20];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(format!("reading the walk's records: {e} (did the process stop?)")),
        };
        out.write_all(&buffer[..n]).map_err(|e| format!("writing: {e}"))?;
        tail.extend_from_slice(&buffer[..n]);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 4096);
        }
    }
    out.flush().map_err(|e| format!("writing: {e}"))?;
    end_of_walk(&tail)
}

fn check_token(mut stream: TcpStream, token: &str) -> Option<TcpStream> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = vec![0u8; token.len() + 1];
    stream.read_exact(&mut line).ok()?;
    (line[..token.len()] == *token.as_bytes() && line[token.len()] == b'\n').then_some(stream)
}

/// What the last record says: the end (`e`, with the pause) or the walk's error (`x`).
fn end_of_walk(tail: &[u8]) -> Result<u64, String> {
    if tail.len() >= 25 && tail[tail.len() - 25] == b'e' {
        let at = tail.len() - 16;
        let mut paused = [0u8; 8];
        paused.copy_from_slice(&tail[at + 8..at + 16]);
        return Ok(u64::from_le_bytes(paused));
    }
    // An error record: 'x', its length, the message, at the very end.
    for start in (0..tail.len().saturating_sub(4)).rev() {
        if tail[start] != b'x' {
            continue;
        }
        let n = u32::from_le_bytes([tail[start + 1], tail[start + 2], tail[start + 3], tail[start + 4]]) as usize;
        if start + 5 + n == tail.len() {
            return Err(format!("the walk inside the interpreter failed: {}", String::from_utf8_lossy(&tail[start + 5..])));
        }
    }
    Err("the walk's stream ended early (did the process stop or run out of memory?)".into())
}
