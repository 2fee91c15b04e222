//! Go: find Go programs (by the build information every Go binary carries)
//! and the `net/http/pprof` endpoint they serve on loopback, and fetch a heap
//! profile from it. Nothing is stopped or injected: the program serves its
//! own profile, as `go tool pprof http://…` would ask it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::procfs;

fn say(line: &str) {
    eprintln!("leakscope: {line}");
}

/// `go1.22.3` when the process's executable is a Go program (its
/// `.go.buildinfo` section: "\xff Go buildinf:", then, since Go 1.18, the
/// version as a length-prefixed string at byte 32).
pub fn version(pid: i32, cmdline: &[String]) -> Option<String> {
    // The exe link opens the very file even from another mount namespace (a
    // helper container); the path is the fallback when the link is not ours to open.
    let exe = std::fs::File::open(format!("/proc/{pid}/exe")).ok().or_else(|| std::fs::File::open(procfs::exe(pid, cmdline)?).ok())?;
    // Read on demand (headers and one section), not the whole binary: the
    // helper lists every process, in a container with little memory.
    let cache = object::ReadCache::new(exe);
    let file = object::File::parse(&cache).ok()?;
    use object::{Object, ObjectSection};
    let section = file.section_by_name(".go.buildinfo")?;
    let info = section.data_range(section.address(), 64.min(section.size())).ok()??;
    if !info.starts_with(b"\xff Go buildinf:") {
        return None;
    }
    let inline = info.get(15).is_some_and(|flags| flags & 2 != 0);
    let version = inline
        .then(|| {
            let len = *info.get(32)? as usize;
            let text = info.get(33..33 + len)?;
            std::str::from_utf8(text).ok().map(str::to_string)
        })
        .flatten();
    Some(version.unwrap_or_else(|| "go".to_string()))
}

/// An HTTP/1.0 GET on loopback (1.0: the answer is never chunked and ends when the connection does).
fn get(port: u16, path: &str, timeout: Duration) -> Result<(u16, BufReader<TcpStream>), String> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: leakscope\r\n\r\n").map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("not an HTTP answer")?;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    Ok((status, reader))
}

/// The loopback port serving `/debug/pprof/heap` for this process, if any:
/// its own listening sockets, probed (all loopback listeners when its
/// descriptors are not readable to us).
fn pprof_port(pid: i32) -> Option<u16> {
    let listeners = procfs::listeners();
    let own = procfs::socket_inodes(pid);
    let mut ports: Vec<u16> = listeners
        .iter()
        .filter(|(inode, l)| l.on_loopback && (own.is_empty() || own.contains(inode)))
        .map(|(_, l)| l.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports.into_iter().find(|&port| {
        let Ok((200, mut body)) = get(port, "/debug/pprof/heap?debug=1", Duration::from_secs(3)) else { return false };
        let mut head = [0u8; 13];
        body.read_exact(&mut head).is_ok() && &head == b"heap profile:"
    })
}

/// `gos`: pid uid gid version rss_kib pprof_port command (tab-separated);
/// pprof_port is `-` when the program serves no heap profile on loopback.
pub fn list() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    for pid in procfs::pids()? {
        let Some(cmdline) = procfs::cmdline(pid) else { continue };
        let Some(version) = version(pid, &cmdline) else { continue };
        let Some((uid, gid)) = procfs::ids(pid) else { continue };
        let port = pprof_port(pid).map_or("-".to_string(), |p| p.to_string());
        let line = [pid.to_string(), uid.to_string(), gid.to_string(), version, procfs::rss_kib(pid).to_string(), port, cmdline.join(" ").replace(['\t', '\n'], " ")].join("\t");
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `go-profile PORT`: the heap profile (pprof protobuf, gzipped as served) to
/// stdout; runtime.MemStats from the text form as status lines before it.
pub fn profile(port: u16) -> Result<(), String> {
    let (status, body) = get(port, "/debug/pprof/heap?debug=1", Duration::from_secs(30)).map_err(|e| format!("asking 127.0.0.1:{port} for its heap profile: {e}"))?;
    if status != 200 {
        return Err(format!("127.0.0.1:{port}/debug/pprof/heap answered {status}"));
    }
    // The text form ends with runtime.MemStats as `# Name = value` lines.
    for line in body.lines().map_while(Result::ok) {
        if let Some((name, value)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = ")) {
            if matches!(name, "HeapAlloc" | "HeapSys" | "HeapInuse" | "HeapIdle" | "HeapReleased" | "HeapObjects" | "Sys" | "StackInuse" | "NumGC") {
                say(&format!("memstats {name} {}", value.split_whitespace().next().unwrap_or(value)));
            }
        }
    }
    let (status, mut body) = get(port, "/debug/pprof/heap", Duration::from_secs(120)).map_err(|e| format!("asking 127.0.0.1:{port} for its heap profile: {e}"))?;
    if status != 200 {
        return Err(format!("127.0.0.1:{port}/debug/pprof/heap answered {status}"));
    }
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut body, &mut out).map_err(|e| format!("copying the profile: {e}"))?;
    out.flush().map_err(|e| format!("writing: {e}"))
}
