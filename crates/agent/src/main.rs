//! `leakscope-agent`: runs inside a container, for a few seconds, on
//! Leakscope's behalf, then is deleted again.
//!
//!   leakscope-agent jvms             one line per JVM: pid uid gid version jcmd attach cmdline (tab-separated)
//!   leakscope-agent dump PID PATH    ask JVM PID to write a heap dump of live objects to PATH (HotSpot attach)
//!   leakscope-agent nodes            one line per node process: pid uid gid inspector sigusr1 rss_kib cmdline
//!   leakscope-agent node-snapshot PID  heap snapshot of node PID over its inspector, to stdout
//!   leakscope-agent pythons          one line per CPython process: pid uid gid version rss_kib cmdline
//!   leakscope-agent python-snapshot PID [SECONDS]  heap snapshot of CPython PID (ptrace: needs CAP_SYS_PTRACE), to stdout
//!   leakscope-agent processes        one line per process: pid uid gid rss_kib threads runtime cmdline
//!   leakscope-agent memory-map PID   memory-map snapshot of PID (smaps, status …), to stdout
//!   leakscope-agent core PID [DIR MARKER]  ELF core of PID for gdb (ptrace: needs CAP_SYS_PTRACE), to stdout (or DIR/core)
//!   leakscope-agent gos              one line per Go program: pid uid gid version rss_kib pprof_port cmdline
//!   leakscope-agent go-profile PORT  the heap profile served on 127.0.0.1:PORT/debug/pprof/heap, to stdout
//!   leakscope-agent cat PATH         copy a file to stdout (for read-only root filesystems and tmpfs)
//!   leakscope-agent rm PATH...       remove files, missing ones included
//!
//! A tiny static binary, because the image may hold no runtime or tools; one
//! module per runtime.

mod core_dump;
mod go;
mod java;
mod native;
mod node;
mod procfs;
mod ptrace;
mod python;

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["jvms"] => java::list_jvms(),
        ["dump", pid, path] => parse_pid(pid).and_then(|pid| java::dump(pid, path)),
        ["nodes"] => node::list(),
        ["node-snapshot", pid] => parse_pid(pid).and_then(node::snapshot),
        ["pythons"] => python::list(),
        ["python-snapshot", pid] => parse_pid(pid).and_then(|pid| python::snapshot(pid, 600)),
        ["python-snapshot", pid, seconds] => parse_pid(pid).and_then(|pid| {
            let seconds = seconds.parse::<u64>().map_err(|_| format!("not a number of seconds: {seconds}"))?;
            python::snapshot(pid, seconds.max(1))
        }),
        ["processes"] => native::list(),
        ["memory-map", pid] => parse_pid(pid).and_then(native::memory_map),
        ["core", pid] => parse_pid(pid).and_then(|pid| core_dump::core(pid, None)),
        ["core", pid, dir, marker] => parse_pid(pid).and_then(|pid| core_dump::core(pid, Some((dir, marker)))),
        ["gos"] => go::list(),
        ["go-profile", port] => port.parse::<u16>().map_err(|_| format!("not a port: {port}")).and_then(go::profile),
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
        _ => Err("usage: leakscope-agent jvms | dump PID PATH | nodes | node-snapshot PID | pythons | python-snapshot PID [SECONDS] | processes | memory-map PID | core PID [DIR MARKER] | gos | go-profile PORT | cat PATH | rm PATH... | version".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("leakscope-error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_pid(pid: &str) -> Result<i32, String> {
    pid.parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("not a pid: {pid}"))
}

fn cat(path: &str) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut out = std::io::stdout().lock();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("reading {path}: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n])
            .map_err(|e| format!("writing: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing: {e}"))
}
