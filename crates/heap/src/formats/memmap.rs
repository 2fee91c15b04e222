//! Memory-map snapshots: what the kernel says a process's memory is made of,
//! for processes whose runtime Leakscope cannot walk (C, C++, Rust, Go
//! without pprof), and for memory outside a managed heap.
//!
//! The format is our own and plain text, because its parts are text already
//! and a person should be able to read a downloaded one:
//!
//! ```text
//! LEAKSCOPE MEMMAP 1
//! pid 7
//! time_ms 1733390000000
//! command /native-leak --rate 5
//! runtime native              (or `go`: its heap arenas look like glibc's)
//! threads 3
//! fds 5
//! == status
//! (the process's /proc/<pid>/status)
//! == smaps_rollup
//! (its /proc/<pid>/smaps_rollup)
//! == smaps
//! (its /proc/<pid>/smaps)
//! == end
//! ```
//!
//! The graph: the process is the root and holds every mapping that has
//! resident or swapped memory (shallow size = resident bytes), one node per
//! thread and per open file (no bytes: their number is what a diff shows).
//! Mappings are classed by kind — `[heap]`, glibc malloc arenas, thread
//! stacks, anonymous, mapped files, shared memory — so the histogram is the
//! totals by kind and the diff of two snapshots says which kind grew.

use leakscope_model::analysis::ClassDelta;
use leakscope_model::format_bytes;

use super::small::{Builder, Node, SmallGraph};
use crate::graph::{DumpFacts, Role};
use crate::HeapError;

pub const MAGIC: &[u8] = b"LEAKSCOPE MEMMAP 1\n";
pub const MAGIC_PREFIX: &[u8] = b"LEAKSCOPE MEMMAP ";

pub const HEAP: &str = "[heap] (malloc's main arena)";
pub const ARENA: &str = "glibc malloc arena";
pub const THREAD_STACK: &str = "thread stack";
pub const MAIN_STACK: &str = "[stack] (main thread)";
pub const ANONYMOUS: &str = "anonymous mapping";
pub const FILE: &str = "mapped file";
pub const SHARED: &str = "shared memory";
pub const KERNEL: &str = "kernel ([vdso], [vvar])";
pub const SWAPPED: &str = "swapped out";
pub const THREAD: &str = "thread";
pub const OPEN_FILE: &str = "open file descriptor";

/// glibc's per-thread arenas reserve this much address space each (HEAP_MAX_SIZE on 64-bit).
const ARENA_RESERVATION: u64 = 64 << 20;
/// pthread stacks start with a guard of a page or a few (`PTHREAD_STACK_GUARD`).
const MAX_GUARD: u64 = 64 << 10;

/// One mapping of smaps: its header line and the fields Leakscope uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub path: String,
    pub rss: u64,
    pub pss: u64,
    pub private_dirty: u64,
    pub anonymous: u64,
    pub swap: u64,
}

impl Mapping {
    fn size(&self) -> u64 {
        self.end - self.start
    }
    fn shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }
    fn no_access(&self) -> bool {
        self.perms.starts_with("---")
    }
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub pid: u32,
    pub time_ms: i64,
    pub command: String,
    /// `go` when the executable is a Go program, else `native`.
    pub runtime: String,
    pub threads: u64,
    pub fds: u64,
    pub status: Vec<(String, String)>,
    pub mappings: Vec<Mapping>,
}

pub fn read(data: &[u8]) -> Result<Snapshot, HeapError> {
    if !data.starts_with(MAGIC) {
        if data.starts_with(MAGIC_PREFIX) {
            return Err(HeapError::Corrupt { offset: 0, reason: "a memory-map snapshot of a version this Leakscope does not read".into() });
        }
        return Err(HeapError::Truncated { offset: data.len() as u64, what: "the memory-map header" });
    }
    let text = std::str::from_utf8(data).map_err(|e| HeapError::Corrupt { offset: e.valid_up_to() as u64, reason: "not text".into() })?;
    // The helper writes the end mark last: without it the snapshot was cut short.
    if !text.trim_end().ends_with("\n== end") {
        return Err(HeapError::Truncated { offset: data.len() as u64, what: "the end of the memory map ('== end')" });
    }
    let mut snapshot = Snapshot::default();
    let mut section = "header";
    let mut ended = false;
    let mut offset = 0u64;
    for line in text.lines() {
        let at = offset;
        offset += line.len() as u64 + 1;
        if at == 0 {
            continue;
        }
        let corrupt = |reason: String| HeapError::Corrupt { offset: at, reason };
        if let Some(name) = line.strip_prefix("== ") {
            section = match name {
                "status" => "status",
                "smaps_rollup" => "rollup",
                "smaps" => "smaps",
                "end" => {
                    ended = true;
                    break;
                }
                other => return Err(corrupt(format!("unknown section '{other}'"))),
            };
            continue;
        }
        match section {
            "header" => {
                let (key, value) = line.split_once(' ').unwrap_or((line, ""));
                let number = || value.trim().parse::<u64>().map_err(|_| corrupt(format!("'{key}' is not a number: {value}")));
                match key {
                    "pid" => snapshot.pid = number()? as u32,
                    "time_ms" => snapshot.time_ms = number()? as i64,
                    "threads" => snapshot.threads = number()?,
                    "fds" => snapshot.fds = number()?,
                    "command" => snapshot.command = value.to_string(),
                    "runtime" => snapshot.runtime = value.trim().to_string(),
                    _ => {}
                }
            }
            "status" => {
                if let Some((key, value)) = line.split_once(':') {
                    snapshot.status.push((key.to_string(), value.trim().to_string()));
                }
            }
            "rollup" => {}
            _ => {
                if let Some(mapping) = mapping_header(line) {
                    snapshot.mappings.push(mapping);
                } else if let Some((key, value)) = line.split_once(':') {
                    let Some(mapping) = snapshot.mappings.last_mut() else {
                        return Err(corrupt("a field before the first mapping".into()));
                    };
                    let kib = || value.trim().strip_suffix(" kB").and_then(|v| v.trim().parse::<u64>().ok()).map(|v| v << 10);
                    match key {
                        "Rss" => mapping.rss = kib().ok_or_else(|| corrupt(format!("bad Rss: {value}")))?,
                        "Pss" => mapping.pss = kib().unwrap_or(0),
                        "Private_Dirty" => mapping.private_dirty = kib().unwrap_or(0),
                        "Anonymous" => mapping.anonymous = kib().unwrap_or(0),
                        "Swap" => mapping.swap = kib().unwrap_or(0),
                        _ => {}
                    }
                } else if !line.trim().is_empty() {
                    return Err(corrupt(format!("not a smaps line: {}", line.chars().take(80).collect::<String>())));
                }
            }
        }
    }
    if !ended {
        return Err(HeapError::Truncated { offset: data.len() as u64, what: "the end of the memory map ('== end')" });
    }
    if snapshot.mappings.is_empty() {
        return Err(HeapError::Corrupt { offset: 0, reason: "the memory map lists no mappings".into() });
    }
    Ok(snapshot)
}

/// `55d0c3a00000-55d0c3a21000 rw-p 00000000 00:00 0    [heap]`
fn mapping_header(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 || end < start {
        return None;
    }
    let (_offset, _device, _inode) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.collect::<Vec<_>>().join(" ");
    Some(Mapping { start, end, perms: perms.to_string(), path, ..Mapping::default() })
}

/// The kind of every mapping, with its neighbours in view (an arena and a
/// thread stack are anonymous mappings told apart by their guard regions).
/// Go's heap arenas are 64 MiB regions too: in a Go program they are not glibc's.
pub fn kinds(mappings: &[Mapping], go: bool) -> Vec<&'static str> {
    (0..mappings.len())
        .map(|i| {
            let m = &mappings[i];
            let path = m.path.as_str();
            let next = mappings.get(i + 1).filter(|n| n.start == m.end);
            let previous = i.checked_sub(1).map(|p| &mappings[p]).filter(|p| p.end == m.start);
            match path {
                "[heap]" => HEAP,
                "[stack]" => MAIN_STACK,
                "[vdso]" | "[vvar]" | "[vsyscall]" | "[vvar_vclock]" => KERNEL,
                _ if path.starts_with("/dev/shm/") || path.starts_with("/SYSV") || path.starts_with("/memfd:") || m.shared() => SHARED,
                _ if path.starts_with('/') => FILE,
                _ if !path.is_empty() && !path.starts_with("[anon") => FILE,
                _ => {
                    let reserved = m.size() + next.filter(|n| n.no_access() && n.path.is_empty()).map_or(0, |n| n.size());
                    if !go && m.start % ARENA_RESERVATION == 0 && reserved == ARENA_RESERVATION && !m.no_access() {
                        ARENA
                    } else if previous.is_some_and(|p| p.no_access() && p.path.is_empty() && p.size() <= MAX_GUARD) && !m.no_access() {
                        THREAD_STACK
                    } else {
                        ANONYMOUS
                    }
                }
            }
        })
        .collect()
}

pub fn parse(data: &[u8]) -> Result<SmallGraph, HeapError> {
    Ok(graph(&read(data)?))
}

pub fn graph(snapshot: &Snapshot) -> SmallGraph {
    graph_as(snapshot, "memmap")
}

/// The graph of a memory map that came in another file (`core`: a core dump's note).
pub fn graph_as(snapshot: &Snapshot, format: &'static str) -> SmallGraph {
    let mut b = Builder::default();
    let class = b.class("process");
    let root = b.node(Node {
        id: 0,
        class,
        shallow: 0,
        count: 1,
        label: Some(format!("pid {} {}", snapshot.pid, snapshot.command).trim().to_string()),
        role: Role::Holder,
    });
    b.root(root, 0);
    for (m, kind) in snapshot.mappings.iter().zip(kinds(&snapshot.mappings, snapshot.runtime == "go")) {
        if m.rss == 0 && m.swap == 0 {
            continue;
        }
        let name = if m.path.is_empty() { String::new() } else { format!(" {}", m.path) };
        let class = b.class(kind);
        let node = b.node(Node {
            id: m.start,
            class,
            shallow: m.rss,
            count: 1,
            label: Some(format!("{kind}{name} {:x}-{:x} {} ({} mapped)", m.start, m.end, m.perms, format_bytes(m.size()))),
            role: Role::Object,
        });
        let name = b.edge_name(&format!("{:x}", m.start));
        b.edge(root, node, Some(name));
        if m.swap > 0 {
            // Mappings are page-aligned: the low bits of the start are free for the swap node's id.
            let class = b.class(SWAPPED);
            let swapped = b.node(Node { id: m.start | 1, class, shallow: m.swap, count: 1, label: Some(format!("swapped out of {:x}", m.start)), role: Role::Object });
            let name = b.edge_name("swap");
            b.edge(node, swapped, Some(name));
        }
    }
    // Threads and descriptors: one node each standing for all of them (the
    // histogram counts them; the file's numbers are not trusted to size anything).
    // Ids above every user-space address.
    for (class, count, id) in [(THREAD, snapshot.threads, 1u64 << 62), (OPEN_FILE, snapshot.fds, 1u64 << 61)] {
        if count > 0 {
            let label = Some(format!("{count} × {class}"));
            let class = b.class(class);
            let node = b.node(Node { id, class, shallow: 0, count, label, role: Role::Object });
            b.edge(root, node, None);
        }
    }
    b.finish(
        DumpFacts { format, runtime: if snapshot.runtime == "go" { "go" } else { "native" }, id_size: 8, timestamp_ms: snapshot.time_ms, ..DumpFacts::default() },
        &["the process"],
    )
    .without_suspects()
}

/// What grew between two memory maps, in plain words, from the kinds' deltas.
pub fn findings(classes: &[ClassDelta]) -> Vec<String> {
    let class = |name: &str| classes.iter().find(|c| c.class == name);
    let grew = |c: &ClassDelta| c.shallow_bytes_delta >= 8 << 20;
    let bytes = |n: i64| format_bytes(n.unsigned_abs());
    let mut out = Vec::new();
    if let Some(c) = class(ARENA).filter(|c| grew(c)) {
        out.push(format!(
            "glibc malloc arenas grew {} ({} → {} arenas; each reserves 64 MiB): native memory that threads allocated with malloc and still hold — a leak in native code, or fragmentation of glibc's per-thread arenas (MALLOC_ARENA_MAX caps their number)",
            bytes(c.shallow_bytes_delta), c.instances_before, c.instances_after
        ));
    }
    if let Some(c) = class(HEAP).filter(|c| grew(c)) {
        out.push(format!("[heap] grew {}: memory from malloc's main arena that was not given back — a leak in native code (malloc/new) on the main thread or through it", bytes(c.shallow_bytes_delta)));
    }
    if let Some(c) = class(ANONYMOUS).filter(|c| grew(c)) {
        let each = (c.instances_delta > 0).then(|| format!(", about {} each", bytes(c.shallow_bytes_delta / c.instances_delta)));
        out.push(format!(
            "anonymous private memory grew {} in {} mappings ({:+} mappings{}): large allocations (malloc above its mmap threshold), a runtime's own heap (Go, V8, the JVM) or direct buffers",
            bytes(c.shallow_bytes_delta), c.instances_after, c.instances_delta, each.unwrap_or_default()
        ));
    }
    if let Some(c) = class(THREAD).filter(|c| c.instances_delta > 0 && c.instances_after >= c.instances_before * 3 / 2 + 4) {
        let stacks = class(THREAD_STACK).map(|s| s.shallow_bytes_delta).filter(|d| *d > 0).map(|d| format!("; thread stacks hold {} more", bytes(d)));
        out.push(format!(
            "thread count grew {} → {}: every thread holds a stack — threads that are started and never end{}",
            c.instances_before, c.instances_after, stacks.unwrap_or_default()
        ));
    }
    if let Some(c) = class(OPEN_FILE).filter(|c| c.instances_delta > 0 && c.instances_after >= c.instances_before * 3 / 2 + 16) {
        out.push(format!("open file descriptors grew {} → {}: files or sockets opened and never closed", c.instances_before, c.instances_after));
    }
    if let Some(c) = class(SHARED).filter(|c| grew(c)) {
        out.push(format!("shared memory grew {} (/dev/shm, memfd, SysV segments): counted against the container by whoever touched it first", bytes(c.shallow_bytes_delta)));
    }
    if let Some(c) = class(FILE).filter(|c| grew(c)) {
        out.push(format!("memory-mapped files grew {}: page cache of mapped files, which the kernel can drop under pressure — rarely a leak", bytes(c.shallow_bytes_delta)));
    }
    if let Some(c) = class(SWAPPED).filter(|c| grew(c)) {
        out.push(format!("swapped-out memory grew {}: memory the process holds but has not touched lately", bytes(c.shallow_bytes_delta)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ObjectGraph;

    fn sample() -> String {
        let mapping = |range: &str, perms: &str, path: &str, rss_kib: u64| {
            format!("{range} {perms} 00000000 00:00 0 {path}\nSize: 4 kB\nRss: {rss_kib} kB\nPss: {rss_kib} kB\nPrivate_Dirty: {rss_kib} kB\nAnonymous: {rss_kib} kB\nSwap: 0 kB\nVmFlags: rd wr mr mw me ac\n")
        };
        [
            "LEAKSCOPE MEMMAP 1\npid 7\ntime_ms 1000\ncommand /native-leak\nthreads 3\nfds 4\n== status\nName:\tnative-leak\nVmRSS:\t 300 kB\n== smaps_rollup\nRss: 1 kB\n== smaps\n".to_string(),
            mapping("00400000-00401000", "r-xp", "/native-leak", 4),
            mapping("01000000-01100000", "rw-p", "[heap]", 1024),
            mapping("7f0000000000-7f0000800000", "rw-p", "", 8192),
            mapping("7f0000800000-7f0004000000", "---p", "", 0),
            mapping("7f0010000000-7f0010001000", "---p", "", 0),
            mapping("7f0010001000-7f0010801000", "rw-p", "", 12),
            mapping("7f0020000000-7f0020100000", "rw-p", "", 512),
            mapping("7ffc00000000-7ffc00021000", "rw-p", "[stack]", 16),
            "== end\n".to_string(),
        ]
        .concat()
    }

    #[test]
    fn classes_mappings_by_kind() {
        let text = sample();
        let snapshot = read(text.as_bytes()).unwrap();
        assert_eq!((snapshot.pid, snapshot.threads, snapshot.fds, snapshot.mappings.len()), (7, 3, 4, 8));
        assert_eq!(kinds(&snapshot.mappings, true)[2], ANONYMOUS);
        assert_eq!(kinds(&snapshot.mappings, false), vec![FILE, HEAP, ARENA, ANONYMOUS, ANONYMOUS, THREAD_STACK, ANONYMOUS, MAIN_STACK]);
        let graph = graph(&snapshot);
        // root, 6 resident mappings, the threads, the descriptors
        assert_eq!(graph.len(), 1 + 6 + 1 + 1);
        assert_eq!(graph.counts().unwrap()[graph.index_of(1 << 62).unwrap() as usize], 3);
        let arena = graph.index_of(0x7f0000000000).unwrap();
        assert_eq!(graph.shallow(arena), 8192 << 10);
        assert!(graph.display_class(arena).starts_with("glibc malloc arena 7f0000000000-7f0000800000 rw-p"));
    }

    #[test]
    fn cut_or_damaged_maps_are_refused() {
        let text = sample();
        let cut = &text.as_bytes()[..text.len() - 8];
        assert!(matches!(read(cut), Err(HeapError::Truncated { .. })));
        let damaged = text.replace("Rss: 1024 kB", "Rss: lots");
        assert!(matches!(read(damaged.as_bytes()), Err(HeapError::Corrupt { .. })));
        assert!(read(b"LEAKSCOPE MEMMAP 9\n").is_err());
    }
}
