//! Java: find JVMs under /proc and ask one for a heap dump over HotSpot's
//! attach protocol (the one jcmd speaks). Hand-written: no crate speaks it,
//! and the helper must stay a tiny static binary.

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::procfs;

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

pub fn list_jvms() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    for pid in procfs::pids()? {
        // Processes may exit while we look; skip what vanished.
        if let Some(jvm) = inspect(pid) {
            let line = [
                jvm.pid.to_string(),
                jvm.uid.to_string(),
                jvm.gid.to_string(),
                jvm.version,
                jvm.jcmd
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "-".into()),
                if jvm.attach_disabled {
                    "disabled"
                } else {
                    "enabled"
                }
                .to_string(),
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
    let cmdline = procfs::cmdline(pid)?;
    let exe = procfs::exe(pid, &cmdline);
    let named_java = exe
        .as_deref()
        .or(cmdline.first().map(Path::new))
        .and_then(Path::file_name)
        .is_some_and(|n| n == "java");
    if !maps.contains("/libjvm.so") && !named_java {
        return None;
    }
    let (uid, gid) = procfs::ids(pid)?;
    let java_home = exe
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    let version = java_home
        .as_ref()
        .and_then(|home| release_version(home))
        .unwrap_or_else(|| "-".into());
    let jcmd = java_home
        .map(|home| home.join("bin/jcmd"))
        .filter(|p| p.is_file());
    let environ = std::fs::read(proc_dir.join("environ")).unwrap_or_default();
    let attach_disabled = cmdline.iter().any(|a| a == "-XX:+DisableAttachMechanism")
        || String::from_utf8_lossy(&environ)
            .split('\0')
            .filter(|v| v.starts_with("JAVA_TOOL_OPTIONS=") || v.starts_with("JDK_JAVA_OPTIONS="))
            .any(|v| v.contains("-XX:+DisableAttachMechanism"));
    Some(Jvm {
        pid,
        uid,
        gid,
        version,
        jcmd,
        attach_disabled,
        cmdline,
    })
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
pub fn dump(pid: i32, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("the dump path must be absolute (the JVM resolves it against its own working directory)".into());
    }
    let socket = PathBuf::from(format!("/tmp/.java_pid{pid}"));
    if !is_socket(&socket) {
        start_attach_listener(pid, &socket)?;
    }
    let mut stream = UnixStream::connect(&socket).map_err(|e| {
        format!(
            "cannot connect to {} ({e}); run as the JVM's own user",
            socket.display()
        )
    })?;
    // Protocol version 1: command and exactly three arguments, each NUL-terminated.
    let mut request = Vec::new();
    for part in ["1", "dumpheap", path, "-live", ""] {
        request.extend_from_slice(part.as_bytes());
        request.push(0);
    }
    stream
        .write_all(&request)
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("reading the JVM's answer: {e}"))?;
    let (code, output) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    print!("{output}");
    if code.trim() != "0" {
        return Err(format!(
            "the JVM refused the dump (code {}): {}",
            code.trim(),
            output.trim()
        ));
    }
    if !output.contains("Heap dump file created") {
        return Err(format!("the JVM did not write the dump: {}", output.trim()));
    }
    Ok(())
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

fn start_attach_listener(pid: i32, socket: &Path) -> Result<(), String> {
    // HotSpot looks for the trigger in its working directory, then in /tmp.
    let candidates = [
        PathBuf::from(format!("/proc/{pid}/cwd/.attach_pid{pid}")),
        PathBuf::from(format!("/tmp/.attach_pid{pid}")),
    ];
    let trigger = candidates
        .iter()
        .find(|p| std::fs::File::create(p).is_ok())
        .ok_or_else(|| {
            format!("cannot create .attach_pid{pid} in the JVM's working directory or /tmp")
        })?;
    // SAFETY: kill(2) with a pid and a signal number has no memory-safety requirements.
    let sent = unsafe { libc::kill(pid, libc::SIGQUIT) };
    let result = if sent != 0 {
        Err(format!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        ))
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
