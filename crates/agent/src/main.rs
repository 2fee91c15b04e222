//! `leakscope-agent`: runs inside a container, for a few seconds, on
//! Leakscope's behalf, then is deleted again.
//!
//!   leakscope-agent jvms             one line per JVM: pid uid gid version jcmd attach cmdline (tab-separated)
//!   leakscope-agent dump PID PATH    ask JVM PID to write a heap dump of live objects to PATH (HotSpot attach)
//!   leakscope-agent cat PATH         copy a file to stdout (for read-only root filesystems and tmpfs)
//!   leakscope-agent rm PATH...       remove files, missing ones included
//!
//! Hand-written because it must be a tiny static binary with no runtime in the
//! image; the attach protocol is HotSpot's own (the one jcmd speaks).

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["jvms"] => list_jvms(),
        ["dump", pid, path] => pid.parse::<i32>().map_err(|_| format!("not a pid: {pid}")).and_then(|pid| dump(pid, path)),
        ["cat", path] => cat(path),
        ["rm", paths @ ..] => {
            for path in paths {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        ["version"] => {
            println!("leakscope-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => Err("usage: leakscope-agent jvms | dump PID PATH | cat PATH | rm PATH... | version".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("leakscope-agent: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A JVM found under /proc.
struct Jvm {
    pid: i32,
    uid: u32,
    gid: u32,
    version: String,
    jcmd: Option<PathBuf>,
    attach_disabled: bool,
    cmdline: Vec<String>,
}

fn list_jvms() -> Result<(), String> {
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    let own = std::process::id() as i32;
    let mut out = std::io::stdout().lock();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if pid == own {
            continue;
        }
        // Processes may exit while we look; skip what vanished.
        if let Some(jvm) = inspect(pid) {
            let line = [
                jvm.pid.to_string(),
                jvm.uid.to_string(),
                jvm.gid.to_string(),
                jvm.version,
                jvm.jcmd.map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
                if jvm.attach_disabled { "disabled" } else { "enabled" }.to_string(),
                jvm.cmdline.join(" ").replace(['\t', '\n'], " "),
            ]
            .join("\t");
            writeln!(out, "{line}").map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn inspect(pid: i32) -> Option<Jvm> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let maps = std::fs::read_to_string(proc_dir.join("maps")).unwrap_or_default();
    let cmdline: Vec<String> = std::fs::read(proc_dir.join("cmdline"))
        .ok()?
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // Another user's exe link needs CAP_SYS_PTRACE, which containers lack by
    // default; then resolve the command through PATH instead.
    let exe = std::fs::read_link(proc_dir.join("exe")).ok().or_else(|| cmdline.first().and_then(|c| resolve_command(c)));
    let named_java = exe.as_deref().or(cmdline.first().map(Path::new)).and_then(Path::file_name).is_some_and(|n| n == "java");
    if !maps.contains("/libjvm.so") && !named_java {
        return None;
    }
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    // Effective ids: the second column of Uid:/Gid:.
    let effective = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|rest| rest.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
    };
    let java_home = exe.as_deref().and_then(Path::parent).and_then(Path::parent).map(Path::to_path_buf);
    let version = java_home.as_ref().and_then(|home| release_version(home)).unwrap_or_else(|| "-".into());
    let jcmd = java_home.map(|home| home.join("bin/jcmd")).filter(|p| p.is_file());
    let environ = std::fs::read(proc_dir.join("environ")).unwrap_or_default();
    let attach_disabled = cmdline.iter().any(|a| a == "-XX:+DisableAttachMechanism")
        || String::from_utf8_lossy(&environ)
            .split('\0')
            .filter(|v| v.starts_with("JAVA_TOOL_OPTIONS=") || v.starts_with("JDK_JAVA_OPTIONS="))
            .any(|v| v.contains("-XX:+DisableAttachMechanism"));
    Some(Jvm { pid, uid: effective("Uid:")?, gid: effective("Gid:")?, version, jcmd, attach_disabled, cmdline })
}

fn resolve_command(command: &str) -> Option<PathBuf> {
    let found = if command.contains('/') {
        PathBuf::from(command)
    } else {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        path.split(':').map(|dir| Path::new(dir).join(command)).find(|p| p.is_file())?
    };
    std::fs::canonicalize(found).ok()
}

/// `JAVA_VERSION="17.0.15"` from the JDK's `release` file.
fn release_version(home: &Path) -> Option<String> {
    let release = std::fs::read_to_string(home.join("release")).ok()?;
    release
        .lines()
        .find_map(|l| l.strip_prefix("JAVA_VERSION="))
        .map(|v| v.trim_matches('"').to_string())
}

/// HotSpot dynamic attach: if the JVM has no attach socket yet, create the
/// `.attach_pid<pid>` trigger file and send SIGQUIT; then send `dumpheap` over
/// `/tmp/.java_pid<pid>` and read the JVM's answer.
fn dump(pid: i32, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("the dump path must be absolute (the JVM resolves it against its own working directory)".into());
    }
    let socket = PathBuf::from(format!("/tmp/.java_pid{pid}"));
    if !is_socket(&socket) {
        start_attach_listener(pid, &socket)?;
    }
    let mut stream = UnixStream::connect(&socket).map_err(|e| {
        format!("cannot connect to {} ({e}); run as the JVM's own user", socket.display())
    })?;
    // Protocol version 1: command and exactly three arguments, each NUL-terminated.
    let mut request = Vec::new();
    for part in ["1", "dumpheap", path, "-live", ""] {
        request.extend_from_slice(part.as_bytes());
        request.push(0);
    }
    stream.write_all(&request).map_err(|e| format!("sending the request: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("reading the JVM's answer: {e}"))?;
    let (code, output) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    print!("{output}");
    if code.trim() != "0" {
        return Err(format!("the JVM refused the dump (code {}): {}", code.trim(), output.trim()));
    }
    if !output.contains("Heap dump file created") {
        return Err(format!("the JVM did not write the dump: {}", output.trim()));
    }
    Ok(())
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

fn start_attach_listener(pid: i32, socket: &Path) -> Result<(), String> {
    // HotSpot looks for the trigger in its working directory, then in /tmp.
    let candidates = [PathBuf::from(format!("/proc/{pid}/cwd/.attach_pid{pid}")), PathBuf::from(format!("/tmp/.attach_pid{pid}"))];
    let trigger = candidates
        .iter()
        .find(|p| std::fs::File::create(p).is_ok())
        .ok_or_else(|| format!("cannot create .attach_pid{pid} in the JVM's working directory or /tmp"))?;
    // SAFETY: kill(2) with a pid and a signal number has no memory-safety requirements.
    let sent = unsafe { libc::kill(pid, libc::SIGQUIT) };
    let result = if sent != 0 {
        Err(format!("cannot signal pid {pid}: {}", std::io::Error::last_os_error()))
    } else {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if is_socket(socket) {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(format!(
                    "JVM {pid} did not open its attach socket within 10 s: attach is disabled (-XX:+DisableAttachMechanism) or the JVM is not responding"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let _ = std::fs::remove_file(trigger);
    result
}

fn cat(path: &str) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut out = std::io::stdout().lock();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| format!("reading {path}: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n]).map_err(|e| format!("writing: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing: {e}"))
}
