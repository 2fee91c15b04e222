//! What is in a heap dump: one front end per format (HPROF from the JVM, V8
//! heap snapshots from Node.js) building one runtime-neutral object graph,
//! then the dominator tree, retained sizes, histogram, leak suspects and the
//! diff of two dumps, which never ask which runtime they are looking at.
//!
//! Architecture invariant: synchronous, no network, no I/O beyond reading
//! the dump (and unpacking a gzipped one to a temporary file next to it).

pub mod alloc;
mod analysis;
pub mod column;
pub mod diff;
pub mod dominators;
pub mod formats;
pub mod graph;
pub mod histogram;
mod names;
mod reader;

pub use formats::{hprof, v8, Format};

/// Maps keyed by object or class ids: ids are already well spread, so a
/// multiply is hash enough (SipHash was a third of the graph build).
pub type IdMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

use std::io::Read;
use std::path::Path;
use std::time::Instant;

pub use analysis::{bfs_referrers, retained_sizes, Options};
pub use leakscope_model::analysis::{Analysis, HeapDiff, ObjectDetail};
pub use names::source_name;

#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    #[error("not an HPROF heap dump (the file does not start with 'JAVA PROFILE 1.0.x'), a V8 heap snapshot (a JSON object that starts with \"snapshot\"), a Leakscope Python heap snapshot ('LEAKSCOPE PYHEAP') or memory map ('LEAKSCOPE MEMMAP'), a pprof heap profile nor an ELF core dump")]
    NotHprof,
    #[error("the dump is truncated at byte {offset}: expected {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("the dump is corrupt at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the gzip stream is damaged: {0}")]
    Gzip(std::io::Error),
}

/// A dump mapped into memory (unpacked first when gzipped).
pub struct DumpFile {
    map: memmap2::Mmap,
    _unpacked: Option<tempfile::NamedTempFile>,
}

impl DumpFile {
    pub fn open(path: &Path) -> Result<Self, HeapError> {
        let io = |source| HeapError::Io { path: path.display().to_string(), source };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut magic = [0u8; 2];
        let n = file.read(&mut magic).map_err(io)?;
        if n == 2 && magic == [0x1f, 0x8b] {
            // Stream the gzip into a temporary file beside the dump (never into memory), then map it.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".leakscope-unpacked-")
                .tempfile_in(dir)
                .or_else(|_| tempfile::NamedTempFile::new())
                .map_err(io)?;
            let file = std::fs::File::open(path).map_err(io)?;
            let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            std::io::copy(&mut decoder, tmp.as_file_mut()).map_err(HeapError::Gzip)?;
            // SAFETY: the temporary file is ours and nobody else writes to it.
            let map = unsafe { memmap2::Mmap::map(tmp.as_file()) }.map_err(io)?;
            return Ok(DumpFile { map, _unpacked: Some(tmp) });
        }
        // SAFETY: a dump being rewritten while we read it yields parse errors, not UB in practice;
        // Leakscope never modifies stored dumps.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(io)?;
        Ok(DumpFile { map, _unpacked: None })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// How far an analysis got: percent done and what it is doing, in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub percent: u8,
    pub phase: &'static str,
}

/// Receives progress; called from the analysing threads, often (cheap to ignore).
pub type ProgressSink<'p> = &'p (dyn Fn(Progress) + Sync);

/// Full analysis of a dump's bytes (HPROF or V8 heap snapshot).
pub fn analyze_bytes(data: &[u8], options: &Options) -> Result<Analysis, HeapError> {
    analyze_bytes_with_progress(data, options, &|_| {})
}

/// Full analysis, reporting progress. Shares of the work measured on a
/// 190 MiB dump: reading 25 %, the graph 30 %, dominators 30 %, the rest 15 %.
pub fn analyze_bytes_with_progress(data: &[u8], options: &Options, report: ProgressSink) -> Result<Analysis, HeapError> {
    let started = Instant::now();
    let timing = std::env::var_os("LEAKSCOPE_TIMING").is_some();
    let phase = |name: &str| {
        if timing {
            let anon = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| s.lines().find(|l| l.starts_with("RssAnon")).map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string()))
                .unwrap_or_default();
            eprintln!("{name}: {} ms, RssAnon {anon} kB", started.elapsed().as_millis());
        }
    };
    let (graph, dom, referrer) = walk(data, report, &phase)?;
    report(Progress { percent: 85, phase: "finding leak suspects" });
    let analysis = analysis::analyze(graph.as_ref(), &dom, &referrer, options, started);
    phase("analysed");
    report(Progress { percent: 100, phase: "done" });
    Ok(analysis)
}

type Walked<'a> = (Box<dyn graph::ObjectGraph + 'a>, dominators::Dominators, column::Column<u32>);

/// The object graph of a dump, by the front end its first bytes call for.
/// Reading and building are the first 55 % of the progress bar.
pub fn build_graph<'a>(data: &'a [u8], report: ProgressSink, phase: &dyn Fn(&str)) -> Result<Box<dyn graph::ObjectGraph + 'a>, HeapError> {
    let total = data.len().max(1) as u64;
    report(Progress { percent: 0, phase: "reading the dump" });
    let reading = |bytes: usize| report(Progress { percent: (bytes as u64 * 25 / total).min(25) as u8, phase: "reading the dump" });
    match formats::sniff(data) {
        // Anything that is not a snapshot goes to the HPROF parser, which says what it expected.
        Some(Format::Hprof) | None => {
            let parsed = hprof::parse(data, &reading)?;
            phase("parsed");
            report(Progress { percent: 25, phase: "building the object graph" });
            let graph = hprof::graph::HprofGraph::build(parsed, None)?;
            phase("graph built");
            Ok(Box::new(graph))
        }
        Some(Format::V8) => {
            let graph = v8::V8Graph::parse(data, &reading, &|| report(Progress { percent: 25, phase: "building the object graph" }))?;
            phase("graph built");
            Ok(Box::new(graph))
        }
        Some(Format::Python) => {
            let graph = formats::python::PythonGraph::parse(data, &reading)?;
            phase("graph built");
            Ok(Box::new(graph))
        }
        Some(Format::MemoryMap) => Ok(Box::new(formats::memmap::parse(data)?)),
        Some(Format::Core) => Ok(Box::new(formats::elfcore::parse(data)?)),
        Some(Format::HeapProfile) => {
            let profile = formats::pprof::decode(data)?;
            phase("decoded");
            let graph = formats::pprof::graph(&profile)?;
            phase("graph built");
            Ok(Box::new(graph))
        }
    }
}

/// Parses the dump, builds the graph, then computes dominators and the
/// breadth-first referrers side by side (the part every question needs).
fn walk<'a>(data: &'a [u8], report: ProgressSink, phase: &dyn Fn(&str)) -> Result<Walked<'a>, HeapError> {
    let graph = build_graph(data, report, phase)?;
    report(Progress { percent: 55, phase: "computing dominators and retained sizes" });
    // Two independent walks of the graph, one per core: the dominator tree,
    // and the breadth-first search that gives every object its shortest path from a root.
    let (dom, referrer) = std::thread::scope(|scope| {
        let bfs = scope.spawn(|| analysis::bfs_referrers(graph.as_ref()));
        let dom = dominators::compute(graph.len(), &graph.root_nodes(), |v| graph.successors(v));
        (dom, join(bfs))
    });
    phase("dominators");
    Ok((graph, dom, referrer))
}

/// One object of a dump by its id (`None` when the dump has no such object).
/// Costs a full pass over the dump, about as long as its analysis.
pub fn inspect_object(data: &[u8], object_id: u64, options: &Options) -> Result<Option<ObjectDetail>, HeapError> {
    let (graph, dom, referrer) = walk(data, &|_| {}, &|_| {})?;
    Ok(graph.index_of(object_id).map(|node| analysis::object_detail(graph.as_ref(), &dom, &referrer, node, options)))
}

pub fn inspect_object_in_file(path: &Path, object_id: u64, options: &Options) -> Result<Option<ObjectDetail>, HeapError> {
    let dump = DumpFile::open(path)?;
    inspect_object(dump.bytes(), object_id, options)
}

pub fn analyze_file(path: &Path, options: &Options) -> Result<Analysis, HeapError> {
    analyze_file_with_progress(path, options, &|_| {})
}

pub fn analyze_file_with_progress(path: &Path, options: &Options, report: ProgressSink) -> Result<Analysis, HeapError> {
    let dump = DumpFile::open(path)?;
    analyze_bytes_with_progress(dump.bytes(), options, report)
}

/// The result of a scoped helper thread; its panic goes on in the caller, never lost.
pub(crate) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
