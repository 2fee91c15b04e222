//! What the helper reads from /proc about a process, for every runtime.
//! Processes may exit while we look: every reader returns None then.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Pids in this container's pid namespace, without our own.
pub fn pids() -> Result<Vec<i32>, String> {
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    let own = std::process::id() as i32;
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| *pid != own)
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The process's executable: its exe link, or (another user's link needs
/// CAP_SYS_PTRACE, which containers lack by default) its command through PATH.
pub fn exe(pid: i32, cmdline: &[String]) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .or_else(|| cmdline.first().and_then(|c| resolve_command(c)))
}

pub fn resolve_command(command: &str) -> Option<PathBuf> {
    let found = if command.contains('/') {
        PathBuf::from(command)
    } else {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        path.split(':')
            .map(|dir| Path::new(dir).join(command))
            .find(|p| p.is_file())?
    };
    std::fs::canonicalize(found).ok()
}

/// Effective uid and gid: the second column of `Uid:` and `Gid:` in status.
pub fn ids(pid: i32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let effective = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((effective("Uid:")?, effective("Gid:")?))
}

/// One variable of the process's environment (readable for its own user only).
pub fn env_var(pid: i32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find_map(|v| v.strip_prefix(&prefix).map(str::to_string))
}

/// A listening TCP socket of this network namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Listener {
    pub port: u16,
    /// Bound to loopback or to every address: reachable on 127.0.0.1.
    pub on_loopback: bool,
}

/// Listening sockets by inode, from /proc/net/tcp and tcp6.
pub fn listeners() -> HashMap<u64, Listener> {
    let mut found = HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let Some((address, port)) = f[1].split_once(':') else {
                continue;
            };
            let (Ok(port), Ok(inode)) = (u16::from_str_radix(port, 16), f[9].parse::<u64>()) else {
                continue;
            };
            let any = address.bytes().all(|b| b == b'0');
            let loopback = address == "0100007F" || address == "00000000000000000000000001000000";
            found.insert(
                inode,
                Listener {
                    port,
                    on_loopback: any || loopback,
                },
            );
        }
    }
    found
}

/// Inodes of the sockets the process holds (needs its own user, or root with ptrace rights).
pub fn socket_inodes(pid: i32) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?.to_string();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Resident memory in KiB (`VmRSS:`), 0 for kernel threads.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
