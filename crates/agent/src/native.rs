//! Any process, whatever its runtime: the list of the container's processes
//! (as `docker top` shows them, with resident memory and threads) and a
//! memory-map snapshot of one — what the kernel says its memory is made of.
//! Reading another process's smaps needs its own user (the engine runs us as
//! that user) or CAP_SYS_PTRACE; nothing is stopped.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::procfs;

/// `processes`: pid uid gid rss_kib threads runtime command (tab-separated),
/// runtime `go` for Go programs, else `native`.
pub fn list() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    for pid in procfs::pids()? {
        let Some(cmdline) = procfs::cmdline(pid) else { continue };
        // Kernel threads have no command line.
        if cmdline.is_empty() {
            continue;
        }
        let Some((uid, gid)) = procfs::ids(pid) else { continue };
        let runtime = if crate::go::version(pid, &cmdline).is_some() { "go" } else { "native" };
        let line = [
            pid.to_string(),
            uid.to_string(),
            gid.to_string(),
            procfs::rss_kib(pid).to_string(),
            threads(pid).to_string(),
            runtime.to_string(),
            cmdline.join(" ").replace(['\t', '\n'], " "),
        ]
        .join("\t");
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// `memory-map PID`: the snapshot in Leakscope's memory-map format (see
/// `crates/heap/src/formats/memmap.rs`), to stdout.
pub fn memory_map(pid: i32) -> Result<(), String> {
    let text = snapshot(pid)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(|e| format!("writing: {e}"))
}

/// The memory-map snapshot of `pid` as text (a core dump carries one too).
pub fn snapshot(pid: i32) -> Result<String, String> {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{name}")).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("process {pid} has exited"),
            std::io::ErrorKind::PermissionDenied => format!(
                "not allowed to read /proc/{pid}/{name} (another user's process needs that user, or CAP_SYS_PTRACE)"
            ),
            _ => format!("cannot read /proc/{pid}/{name}: {e}"),
        })
    };
    let cmdline = procfs::cmdline(pid).ok_or_else(|| format!("process {pid} has exited"))?;
    // smaps first: the one that must succeed, and the one the rest is read around.
    let smaps = read("smaps")?;
    if smaps.is_empty() {
        return Err(format!("process {pid} has no memory map (a kernel thread, or it is exiting)"));
    }
    let rollup = read("smaps_rollup").unwrap_or_default();
    let status = read("status")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let runtime = if crate::go::version(pid, &cmdline).is_some() { "go" } else { "native" };
    let command = cmdline.join(" ").replace(['\t', '\n'], " ");
    Ok(format!(
        "LEAKSCOPE MEMMAP 1\npid {pid}\ntime_ms {time_ms}\ncommand {command}\nruntime {runtime}\nthreads {}\nfds {fds}\n\
         == status\n{status}== smaps_rollup\n{rollup}== smaps\n{smaps}== end\n",
        threads(pid)
    ))
}
