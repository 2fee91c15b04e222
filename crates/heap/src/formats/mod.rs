//! One front end per dump format; each builds an [`crate::graph::ObjectGraph`].

pub mod elfcore;
pub mod hprof;
pub mod memmap;
pub mod pprof;
pub mod python;
pub mod small;
pub mod v8;

/// Which front end reads these bytes (by their first bytes, not the file name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Hprof,
    V8,
    Python,
    /// A process's memory map (any runtime): `memmap.rs`.
    MemoryMap,
    /// A Go heap profile (pprof protobuf).
    HeapProfile,
    /// An ELF core dump (any process, for gdb): `core.rs`.
    Core,
}

impl Format {
    pub const ALL: [Format; 6] = [Format::Hprof, Format::V8, Format::Python, Format::MemoryMap, Format::HeapProfile, Format::Core];

    /// The name stored with a dump and shown by the API (`hprof`, `v8`, `python`).
    pub fn key(self) -> &'static str {
        match self {
            Format::Hprof => "hprof",
            Format::V8 => "v8",
            Format::Python => "python",
            Format::MemoryMap => "memmap",
            Format::HeapProfile => "pprof",
            Format::Core => "core",
        }
    }

    /// What a capture of this format is called in a request (`{"kind": …}`) and on pages.
    pub fn kind(self) -> &'static str {
        match self {
            Format::Hprof => "heap-dump",
            Format::V8 => "heap-snapshot",
            Format::Python => "object-graph",
            Format::MemoryMap => "memory-map",
            Format::HeapProfile => "heap-profile",
            Format::Core => "core",
        }
    }

    pub fn from_key(key: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The file extension a dump of this format is stored and downloaded with.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Hprof => "hprof",
            Format::V8 => "heapsnapshot",
            Format::Python => "pyheap",
            Format::MemoryMap => "memmap",
            Format::HeapProfile => "pprof",
            Format::Core => "core",
        }
    }

    /// The runtime whose dumps use this format.
    pub fn runtime(self) -> &'static str {
        match self {
            Format::Hprof => "java",
            Format::V8 => "node",
            Format::Python => "python",
            Format::MemoryMap => "native",
            Format::HeapProfile => "go",
            Format::Core => "native",
        }
    }

    /// In words, for pages and errors.
    pub fn description(self) -> &'static str {
        match self {
            Format::Hprof => "an HPROF dump (Java)",
            Format::V8 => "a V8 heap snapshot (Node.js)",
            Format::Python => "a Python heap snapshot (Leakscope's walk of a CPython process)",
            Format::MemoryMap => "a memory map (Leakscope's snapshot of a process's /proc/<pid>/smaps)",
            Format::HeapProfile => "a Go heap profile (pprof)",
            Format::Core => "an ELF core dump (any process, for gdb)",
        }
    }
}

pub fn sniff(data: &[u8]) -> Option<Format> {
    if data.starts_with(b"JAVA PROFILE") {
        return Some(Format::Hprof);
    }
    for (prefix, format) in [(python::MAGIC_PREFIX, Format::Python), (memmap::MAGIC_PREFIX, Format::MemoryMap)] {
        if data.starts_with(prefix) || (data.len() < prefix.len() && !data.is_empty() && prefix.starts_with(data)) {
            return Some(format);
        }
    }
    if elfcore::looks_like(data) {
        return Some(Format::Core);
    }
    if pprof::looks_like(data) {
        return Some(Format::HeapProfile);
    }
    let start = data.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &data[start..];
    if rest.first() == Some(&b'{') {
        let head = &rest[1..rest.len().min(64)];
        let key = head.iter().position(|b| !b.is_ascii_whitespace()).map(|i| &head[i..]).unwrap_or(&[]);
        // A prefix counts too: a snapshot cut short should say it is truncated, not foreign.
        let cut = key.len() < 10 && !key.is_empty();
        if key.starts_with(b"\"snapshot\"") || (cut && b"\"snapshot\"".starts_with(key)) {
            return Some(Format::V8);
        }
    }
    None
}

/// What grew between two dumps of this format, in plain words, where the
/// format has more to say than its histogram (a memory map's kinds).
pub fn findings(format: &str, classes: &[leakscope_model::analysis::ClassDelta]) -> Vec<String> {
    match Format::from_key(format) {
        Some(Format::MemoryMap | Format::Core) => memmap::findings(classes),
        _ => Vec::new(),
    }
}
