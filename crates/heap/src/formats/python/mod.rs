//! Python heap snapshots ("LEAKSCOPE PYHEAP 1"), written by Leakscope's own
//! walk running inside a CPython process (`crates/agent/src/python/walk.py`).
//!
//! Why a format of our own: CPython has no heap dump format; pickle would run
//! code and cannot describe objects it cannot pickle; JSON for millions of
//! objects costs the target more time and memory to write than packed records
//! (`struct.pack` into one buffer), and the walk must pause the program as
//! little as possible. Hand-written reader: nothing else reads this format.
//!
//! Layout (little-endian): the line `LEAKSCOPE PYHEAP 1\n`, one JSON line
//! (`python`, `implementation`, `pid`, `time_ms`, `tracemalloc`), then records,
//! each starting with one tag byte:
//! - `s` len:u32 utf8[len] — a string; strings are numbered 0, 1, … in order.
//! - `o` id:u64 type:u32 size:u64 length:u64 label:u32 n:u32, then its n edges
//!   in three columns: n targets:u64, n kinds:u8, n values:u32 (columns, so the
//!   walk packs a whole column in C) — an object: `id()` (its address), its type's
//!   name (string), `sys.getsizeof`, `len()` for builtin containers and strings
//!   (else all ones), a label (module, class or function name; else all ones).
//!   Edge kinds: 0 named (value = string: a dict key, an attribute),
//!   1 index (value = position), 2 unnamed, 3 a dict's key object itself.
//! - `c` k:u32 e:u32, then columns for k objects: ids k×u64, types k×u32,
//!   sizes k×u64, reference starts (k+1)×u32 (the last is e), references
//!   e×u64 — objects in bulk (the walk makes each column with one `map()`
//!   in C). Their references are named by position: `[i]` for list and tuple
//!   items, a class's attribute names (`a` record) for its instances.
//! - `d` — a `c` record of dicts, with one more column: the name of each
//!   entry's key (e/2 × u32, all ones when unnamed); references alternate key, value.
//! - `a` type:u32 n:u32, then n names:u32 — instances of that type with n
//!   references in a chunk name them by this list (the class last, `__class__`).
//! - `t` n:u32, then n × (file:u32 line:u32 size:u64 blocks:u64) — when
//!   tracemalloc was tracing: the lines holding the most live memory.
//! - `f` owner:u64 dict:u64 — that dict is the owner's own `__dict__` (module,
//!   class, instance): its entries become the owner's attributes.
//! - `r` id:u64 kind:u8 label:u32 — a root (0 `sys.modules`, 1 a thread's frame).
//! - `e` objects:u64 walk_us:u64 paused_us:u64 — the end; without it the
//!   snapshot is truncated.
//! - `x` len:u32 utf8[len] — the walk failed, and why.
//!
//! Objects may appear twice (the walk bounds its own memory); the first
//! record counts. Edges to ids without a record (objects made during the
//! walk) are dropped. Objects no other object refers to are roots too (held
//! by C code or the interpreter), and so is one object of each cycle that
//! nothing reaches.

use crate::column::Column;
use crate::graph::{DumpFacts, ObjectGraph, Role};
use crate::HeapError;

pub const MAGIC: &[u8] = b"LEAKSCOPE PYHEAP 1\n";
/// The start every version shares (for sniffing and a clear "newer version" error).
pub const MAGIC_PREFIX: &[u8] = b"LEAKSCOPE PYHEAP ";

const NO_STRING: u32 = u32::MAX;
const NO_LENGTH: u64 = u64::MAX;
const EDGE_NAMED: u8 = 0;
const EDGE_INDEX: u8 = 1;
const EDGE_UNNAMED: u8 = 2;
const EDGE_KEY: u8 = 3;
/// Not in the file: a bulk object's reference, named by its position.
const EDGE_POSITION: u8 = 4;
const OBJECT_HEAD: usize = 8 + 4 + 8 + 8 + 4 + 4;
const EDGE_BYTES: usize = 8 + 1 + 4;
/// No Python object is a tebibyte; anything bigger is a corrupt size.
const MAX_OBJECT_BYTES: u64 = 1 << 40;
const MAX_HEAP_BYTES: u64 = 1 << 62;

pub const ROOT_MODULES: u8 = 0;
pub const ROOT_FRAME: u8 = 1;
pub const ROOT_UNREFERENCED: u8 = 2;
pub const ROOT_CYCLE: u8 = 3;

/// What the snapshot's JSON line says about the process.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub python: String,
    #[serde(default)]
    pub pid: u64,
    #[serde(default)]
    pub time_ms: i64,
    #[serde(default)]
    pub tracemalloc: bool,
}

/// What the `e` record says.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub objects: u64,
    pub walk_us: u64,
    pub paused_us: u64,
}

pub struct PythonGraph<'a> {
    data: &'a [u8],
    pub meta: Meta,
    pub totals: Totals,
    /// Where each node's record starts, nodes in ascending id (address) order:
    /// ids, lengths, labels and edge names are read back from the file.
    record_at: Offsets,
    /// (owner node, record offset of a dict folded into it), sorted by owner.
    folded: Vec<(u32, u64)>,
    /// Dict ids folded into an owner id, sorted: edges to the dict go to the owner.
    fold_target: Vec<(u64, u64)>,
    class_of: Column<u32>,
    class_names: Vec<String>,
    /// Shallow sizes below 4 GiB; the rare bigger ones in `big_shallow`.
    shallow: Column<u32>,
    big_shallow: Vec<(u32, u64)>,
    edge_start: Column<u32>,
    edges: Column<u32>,
    roots: Vec<(u32, u8)>,
    /// (offset, length) of every string.
    strings: Vec<(u32, u32)>,
    holder_classes: [u32; 2],
    /// Names of the snapshot's own roots (`sys.modules`), by node.
    root_labels: Vec<(u32, u32)>,
    chunks: Vec<Chunk>,
    /// (type, reference count) -> where the names of those references are, sorted.
    attribute_names: Vec<((u32, u32), u64)>,
    /// tracemalloc's biggest sites: (file, line, size, blocks).
    sites: Vec<(u32, u32, u64, u64)>,
}

/// Record offsets in four bytes each while the file allows (it is the biggest per-node column).
enum Offsets {
    Small(Column<u32>),
    Large(Column<u64>),
}

impl Offsets {
    fn new(offsets: impl ExactSizeIterator<Item = u64>, file_len: usize) -> Offsets {
        if file_len <= u32::MAX as usize {
            Offsets::Small(offsets.map(|o| o as u32).collect())
        } else {
            Offsets::Large(offsets.collect())
        }
    }
    fn get(&self, node: usize) -> u64 {
        match self {
            Offsets::Small(v) => v[node] as u64,
            Offsets::Large(v) => v[node],
        }
    }
    fn len(&self) -> usize {
        match self {
            Offsets::Small(v) => v.len(),
            Offsets::Large(v) => v.len(),
        }
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Bulk objects of one `c` record: where its columns start.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    /// Offset of the ids column.
    at: u64,
    k: u32,
    /// A `d` chunk: where its key names column starts.
    names: Option<u64>,
}

impl Chunk {
    fn types(&self) -> usize {
        (self.at + 8 * self.k as u64) as usize
    }
    fn sizes(&self) -> usize {
        self.types() + 4 * self.k as usize
    }
    fn starts(&self) -> usize {
        self.sizes() + 8 * self.k as usize
    }
    fn targets(&self) -> usize {
        self.starts() + 4 * (self.k as usize + 1)
    }
}

/// Where the references of a record are.
#[derive(Clone, Copy)]
enum Edges<'a> {
    /// Columns: n targets, n kinds, n values.
    Named(&'a [u8]),
    /// n targets, named by position.
    Positional(&'a [u8]),
    /// 2m targets (key, value, …) and m key names.
    Dict(&'a [u8], &'a [u8]),
}

/// One object, read in place: from its own `o` record or from a chunk.
struct Record<'a> {
    id: u64,
    type_name: u32,
    size: u64,
    length: u64,
    label: u32,
    edges: Edges<'a>,
}

/// Objects are found by a file offset: their `o` record's, or (bulk objects)
/// their entry in a chunk's ids column. Chunks are sorted by offset.
fn read_record<'a>(data: &'a [u8], chunks: &[Chunk], at: u64) -> Record<'a> {
    let c = chunks.partition_point(|c| c.at <= at);
    if c > 0 {
        let chunk = chunks[c - 1];
        if at < chunk.at + 8 * chunk.k as u64 {
            let i = ((at - chunk.at) / 8) as usize;
            let starts = chunk.starts() + 4 * i;
            let (first, end) = (le_u32(&data[starts..]) as usize, le_u32(&data[starts + 4..]) as usize);
            let targets = &data[chunk.targets() + 8 * first..chunk.targets() + 8 * end];
            let (length, edges) = match chunk.names {
                Some(names) => {
                    let names = names as usize;
                    ((end - first) as u64 / 2, Edges::Dict(targets, &data[names + 2 * first..names + 2 * end]))
                }
                None => ((end - first) as u64, Edges::Positional(targets)),
            };
            return Record {
                id: le_u64(&data[at as usize..]),
                type_name: le_u32(&data[chunk.types() + 4 * i..]),
                size: le_u64(&data[chunk.sizes() + 8 * i..]),
                length,
                label: NO_STRING,
                edges,
            };
        }
    }
    Record::at(data, at as usize)
}

impl<'a> Record<'a> {
    /// The `o` record at `at` (just after its tag); checked when the file was first scanned.
    fn at(data: &'a [u8], at: usize) -> Record<'a> {
        let h = &data[at..at + OBJECT_HEAD];
        let n = le_u32(&h[32..]) as usize;
        Record {
            id: le_u64(h),
            type_name: le_u32(&h[8..]),
            size: le_u64(&h[12..]),
            length: le_u64(&h[20..]),
            label: le_u32(&h[28..]),
            edges: Edges::Named(&data[at + OBJECT_HEAD..at + OBJECT_HEAD + n * EDGE_BYTES]),
        }
    }

    fn edge_count(&self) -> usize {
        match self.edges {
            Edges::Named(bytes) => bytes.len() / EDGE_BYTES,
            Edges::Positional(bytes) | Edges::Dict(bytes, _) => bytes.len() / 8,
        }
    }

    /// (target, kind, value); positional references come as `EDGE_POSITION` with their index.
    fn edges(&self) -> Box<dyn Iterator<Item = (u64, u8, u32)> + 'a> {
        match self.edges {
            Edges::Named(bytes) => {
                let n = bytes.len() / EDGE_BYTES;
                let (targets, rest) = bytes.split_at(8 * n);
                let (kinds, values) = rest.split_at(n);
                Box::new(targets.chunks_exact(8).zip(kinds).zip(values.chunks_exact(4)).map(|((t, &k), v)| (le_u64(t), k, le_u32(v))))
            }
            Edges::Positional(bytes) => Box::new(bytes.chunks_exact(8).enumerate().map(|(i, t)| (le_u64(t), EDGE_POSITION, i as u32))),
            Edges::Dict(targets, names) => Box::new(targets.chunks_exact(8).enumerate().map(move |(i, t)| {
                if i % 2 == 0 {
                    (le_u64(t), EDGE_KEY, 0)
                } else {
                    match le_u32(&names[4 * (i / 2)..]) {
                        NO_STRING => (le_u64(t), EDGE_UNNAMED, 0),
                        name => (le_u64(t), EDGE_NAMED, name),
                    }
                }
            })),
        }
    }
}

/// What the first pass over the records found.
struct Scan {
    meta: Meta,
    totals: Totals,
    strings: Vec<(u32, u32)>,
    /// (id, record offset) of every object record.
    objects: Vec<(u64, u64)>,
    /// (owner id, dict id).
    folds: Vec<(u64, u64)>,
    /// (id, kind, label).
    roots: Vec<(u64, u8, u32)>,
    chunks: Vec<Chunk>,
    /// (type, n) -> offset of n attribute names.
    attribute_names: Vec<((u32, u32), u64)>,
    /// (file, line, size, blocks) from tracemalloc.
    sites: Vec<(u32, u32, u64, u64)>,
}

fn scan(data: &[u8], reading: &dyn Fn(usize)) -> Result<Scan, HeapError> {
    if !data.starts_with(MAGIC) {
        if data.starts_with(MAGIC_PREFIX) {
            let version: String = data[MAGIC_PREFIX.len()..].iter().take(8).take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
            return Err(HeapError::Corrupt {
                offset: MAGIC_PREFIX.len() as u64,
                reason: format!("Python heap snapshot version {version}; this Leakscope reads version 1 (a newer Leakscope wrote it)"),
            });
        }
        return Err(HeapError::Corrupt { offset: 0, reason: "not a Leakscope Python heap snapshot".into() });
    }
    let mut pos = MAGIC.len();
    let line_end = memchr::memchr(b'\n', &data[pos..]).ok_or(HeapError::Truncated { offset: pos as u64, what: "the snapshot's JSON header line" })?;
    let meta: Meta = serde_json::from_slice(&data[pos..pos + line_end])
        .map_err(|e| HeapError::Corrupt { offset: pos as u64, reason: format!("the header line is not JSON: {e}") })?;
    pos += line_end + 1;
    if data.len() > u32::MAX as usize * 4 {
        return Err(HeapError::Corrupt { offset: 0, reason: "snapshots above 16 GiB are not supported".into() });
    }
    let mut scan = Scan {
        meta,
        totals: Totals::default(),
        strings: Vec::new(),
        objects: Vec::new(),
        folds: Vec::new(),
        roots: Vec::new(),
        chunks: Vec::new(),
        attribute_names: Vec::new(),
        sites: Vec::new(),
    };
    let need = |pos: usize, n: usize, what: &'static str| -> Result<(), HeapError> {
        if data.len() - pos < n {
            Err(HeapError::Truncated { offset: pos as u64, what })
        } else {
            Ok(())
        }
    };
    let mut next_report = 0usize;
    loop {
        if pos >= next_report {
            reading(pos);
            next_report = pos + (16 << 20);
        }
        need(pos, 1, "a record, or the end record 'e' (the walk was cut short)")?;
        let tag = data[pos];
        let at = pos + 1;
        match tag {
            b's' => {
                need(at, 4, "a string's length")?;
                let n = le_u32(&data[at..]) as usize;
                need(at + 4, n, "a string's bytes")?;
                if std::str::from_utf8(&data[at + 4..at + 4 + n]).is_err() {
                    return Err(HeapError::Corrupt { offset: (at + 4) as u64, reason: "a string is not UTF-8".into() });
                }
                scan.strings.push(((at + 4) as u32, n as u32));
                pos = at + 4 + n;
            }
            b'o' => {
                need(at, OBJECT_HEAD, "an object record")?;
                let n = le_u32(&data[at + 32..]) as usize;
                need(at + OBJECT_HEAD, n.saturating_mul(EDGE_BYTES), "an object's references")?;
                let record = Record::at(data, at);
                let strings = scan.strings.len() as u32;
                if record.type_name >= strings || (record.label != NO_STRING && record.label >= strings) {
                    return Err(HeapError::Corrupt { offset: at as u64, reason: "an object names a string that was not written before it".into() });
                }
                for (k, (_, kind, value)) in record.edges().enumerate() {
                    if ![EDGE_NAMED, EDGE_INDEX, EDGE_UNNAMED, EDGE_KEY].contains(&kind) || (kind == EDGE_NAMED && value >= strings) {
                        return Err(HeapError::Corrupt {
                            offset: (at + OBJECT_HEAD + 8 * n + k) as u64,
                            reason: "a reference has an unknown kind or names an unknown string".into(),
                        });
                    }
                }
                scan.objects.push((record.id, at as u64));
                pos = at + OBJECT_HEAD + n * EDGE_BYTES;
            }
            b'c' | b'd' => {
                need(at, 8, "a chunk's counts")?;
                let (k, e) = (le_u32(&data[at..]) as usize, le_u32(&data[at + 4..]) as usize);
                let dicts = tag == b'd';
                if dicts && e % 2 != 0 {
                    return Err(HeapError::Corrupt { offset: at as u64, reason: "a dict chunk with an odd number of references".into() });
                }
                let columns = k
                    .checked_mul(20)
                    .and_then(|b| b.checked_add(4 * (k + 1)))
                    .and_then(|b| b.checked_add(e.checked_mul(8)?))
                    .and_then(|b| b.checked_add(if dicts { e.checked_mul(2)? } else { 0 }));
                let columns = columns.ok_or(HeapError::Corrupt { offset: at as u64, reason: "a chunk's counts overflow".into() })?;
                need(at + 8, columns, "a chunk's columns")?;
                let mut chunk = Chunk { at: (at + 8) as u64, k: k as u32, names: None };
                if dicts {
                    chunk.names = Some((chunk.targets() + 8 * e) as u64);
                }
                let strings = scan.strings.len() as u32;
                if let Some(names) = chunk.names {
                    for j in 0..e / 2 {
                        let name = le_u32(&data[names as usize + 4 * j..]);
                        if name != NO_STRING && name >= strings {
                            return Err(HeapError::Corrupt { offset: names + 4 * j as u64, reason: "a key names a string that was not written before it".into() });
                        }
                    }
                }
                for i in 0..k {
                    if le_u32(&data[chunk.types() + 4 * i..]) >= strings {
                        return Err(HeapError::Corrupt { offset: (chunk.types() + 4 * i) as u64, reason: "an object names a string that was not written before it".into() });
                    }
                }
                let mut previous = 0u32;
                for i in 0..=k {
                    let start = le_u32(&data[chunk.starts() + 4 * i..]);
                    let odd = dicts && start % 2 != 0;
                    if odd || start < previous || (i == 0 && start != 0) || (i == k && start as usize != e) || start as usize > e {
                        return Err(HeapError::Corrupt { offset: (chunk.starts() + 4 * i) as u64, reason: "a chunk's reference starts are out of order".into() });
                    }
                    previous = start;
                }
                for i in 0..k {
                    scan.objects.push((le_u64(&data[chunk.at as usize + 8 * i..]), chunk.at + 8 * i as u64));
                }
                scan.chunks.push(chunk);
                pos = at + 8 + columns;
            }
            b'a' => {
                need(at, 8, "a names record")?;
                let (t, n) = (le_u32(&data[at..]), le_u32(&data[at + 4..]) as usize);
                need(at + 8, n.saturating_mul(4), "a names record's names")?;
                let strings = scan.strings.len() as u32;
                if t >= strings || (0..n).any(|i| le_u32(&data[at + 8 + 4 * i..]) >= strings && le_u32(&data[at + 8 + 4 * i..]) != NO_STRING) {
                    return Err(HeapError::Corrupt { offset: at as u64, reason: "a names record names a string that was not written before it".into() });
                }
                scan.attribute_names.push(((t, n as u32), (at + 8) as u64));
                pos = at + 8 + 4 * n;
            }
            b't' => {
                need(at, 4, "the allocation sites' count")?;
                let n = le_u32(&data[at..]) as usize;
                need(at + 4, n.saturating_mul(24), "the allocation sites")?;
                for i in 0..n {
                    let row = &data[at + 4 + 24 * i..];
                    let file = le_u32(row);
                    if file as usize >= scan.strings.len() {
                        return Err(HeapError::Corrupt { offset: (at + 4 + 24 * i) as u64, reason: "an allocation site names a string that was not written before it".into() });
                    }
                    scan.sites.push((file, le_u32(&row[4..]), le_u64(&row[8..]), le_u64(&row[16..])));
                }
                pos = at + 4 + 24 * n;
            }
            b'f' => {
                need(at, 16, "a __dict__ record")?;
                scan.folds.push((le_u64(&data[at..]), le_u64(&data[at + 8..])));
                pos = at + 16;
            }
            b'r' => {
                need(at, 13, "a root record")?;
                let kind = data[at + 8];
                if kind > ROOT_FRAME {
                    return Err(HeapError::Corrupt { offset: (at + 8) as u64, reason: format!("unknown root kind {kind}") });
                }
                let label = le_u32(&data[at + 9..]);
                if label != NO_STRING && label as usize >= scan.strings.len() {
                    return Err(HeapError::Corrupt { offset: (at + 9) as u64, reason: "a root names a string that was not written before it".into() });
                }
                scan.roots.push((le_u64(&data[at..]), kind, label));
                pos = at + 13;
            }
            b'e' => {
                need(at, 24, "the end record")?;
                scan.totals = Totals { objects: le_u64(&data[at..]), walk_us: le_u64(&data[at + 8..]), paused_us: le_u64(&data[at + 16..]) };
                return Ok(scan);
            }
            b'x' => {
                need(at, 4, "the walk's error message")?;
                let n = (le_u32(&data[at..]) as usize).min(data.len() - at - 4);
                let message = String::from_utf8_lossy(&data[at + 4..at + 4 + n]);
                return Err(HeapError::Corrupt { offset: pos as u64, reason: format!("the walk inside the interpreter failed: {message}") });
            }
            other => {
                return Err(HeapError::Corrupt { offset: pos as u64, reason: format!("unknown record tag 0x{other:02x}") });
            }
        }
    }
}

impl<'a> PythonGraph<'a> {
    pub fn parse(data: &'a [u8], reading: &dyn Fn(usize)) -> Result<Self, HeapError> {
        let Scan { meta, totals, strings, mut objects, mut folds, roots, chunks, mut attribute_names, sites } = scan(data, reading)?;
        // The last names record of a class counts (the walk writes one when they change).
        attribute_names.reverse();
        attribute_names.sort_by_key(|a| a.0);
        attribute_names.dedup_by_key(|a| a.0);
        // The first record of an id counts (repeats are untracked objects written again).
        objects.sort_unstable();
        objects.dedup_by_key(|o| o.0);
        folds.sort_unstable_by_key(|f| f.1);
        folds.dedup_by_key(|f| f.1);
        let offset_of = |objects: &[(u64, u64)], id: u64| objects.binary_search_by_key(&id, |o| o.0).ok().map(|i| objects[i].1);
        // A dict folds into its owner only when both were written (and the owner is no folded dict itself).
        folds.retain(|&(owner, dict)| owner != dict && offset_of(&objects, owner).is_some() && offset_of(&objects, dict).is_some());
        let folded_ids: Vec<u64> = folds.iter().map(|f| f.1).collect();
        folds.retain(|&(owner, _)| folded_ids.binary_search(&owner).is_err());
        drop(folded_ids);
        let fold_target: Vec<(u64, u64)> = folds.iter().map(|&(owner, dict)| (dict, owner)).collect();
        let folded_records: Vec<(u64, u64)> = folds.iter().filter_map(|&(owner, dict)| Some((owner, offset_of(&objects, dict)?))).collect();
        drop(folds);
        objects.retain(|&(id, _)| fold_target.binary_search_by_key(&id, |f| f.0).is_err());
        objects.shrink_to_fit();
        let ids: Vec<u64> = objects.iter().map(|o| o.0).collect();
        let record_at = Offsets::new(objects.iter().map(|o| o.1), data.len());
        drop(objects);
        let mut folded: Vec<(u32, u64)> =
            folded_records.iter().filter_map(|&(owner, at)| Some((ids.binary_search(&owner).ok()? as u32, at))).collect();
        folded.sort_unstable();
        drop(folded_records);

        let resolve = |id: u64| -> Option<u32> {
            let id = match fold_target.binary_search_by_key(&id, |f| f.0) {
                Ok(i) => fold_target[i].1,
                Err(_) => id,
            };
            ids.binary_search(&id).ok().map(|i| i as u32)
        };
        let n = ids.len();
        // Exact sizes up front: no doubling of the biggest column.
        let edge_total: usize = (0..n).map(|v| read_record(data, &chunks, record_at.get(v)).edge_count()).sum::<usize>()
            + folded.iter().map(|f| read_record(data, &chunks, f.1).edge_count()).sum::<usize>();
        let mut class_index = vec![u32::MAX; strings.len()];
        let mut class_names = Vec::new();
        let mut class_of = Column::with_capacity(n);
        let mut shallow = Column::with_capacity(n);
        let mut big_shallow = Vec::new();
        let mut edge_start = Column::with_capacity(n + 1);
        let mut edges = Column::with_capacity(edge_total);
        let string = |s: u32| -> &str {
            let (at, len) = strings[s as usize];
            std::str::from_utf8(&data[at as usize..(at + len) as usize]).unwrap_or("?")
        };
        let mut next_fold = 0usize;
        // Sizes come from the file: their sum must stay far from overflowing every later total.
        let mut heap_total = 0u64;
        for node in 0..n {
            let at = record_at.get(node);
            let record = read_record(data, &chunks, at);
            let class = &mut class_index[record.type_name as usize];
            if *class == u32::MAX {
                *class = class_names.len() as u32;
                class_names.push(string(record.type_name).to_string());
            }
            class_of.push(*class);
            edge_start.push(u32::try_from(edges.len()).map_err(|_| HeapError::Corrupt { offset: at, reason: "more than 4 billion references".into() })?);
            let mut size = record.size;
            let mut add = |record: &Record| {
                for (target, _, _) in record.edges() {
                    if let Some(t) = resolve(target) {
                        if t as usize != node {
                            edges.push(t);
                        }
                    }
                }
            };
            add(&record);
            while next_fold < folded.len() && folded[next_fold].0 as usize == node {
                let dict = read_record(data, &chunks, folded[next_fold].1);
                size = size.saturating_add(dict.size);
                add(&dict);
                next_fold += 1;
            }
            heap_total = heap_total.saturating_add(size);
            if size > MAX_OBJECT_BYTES || heap_total > MAX_HEAP_BYTES {
                return Err(HeapError::Corrupt { offset: at, reason: format!("an object of {size} bytes, or a heap above 4 EiB: not a real heap") });
            }
            if size >= u32::MAX as u64 {
                big_shallow.push((node as u32, size));
                shallow.push(u32::MAX);
            } else {
                shallow.push(size as u32);
            }
        }
        edge_start.push(edges.len() as u32);
        drop(ids);
        let holder_classes = [
            class_names.iter().position(|c| c == "module").map_or(u32::MAX, |i| i as u32),
            class_names.iter().position(|c| c == "type").map_or(u32::MAX, |i| i as u32),
        ];
        let mut graph = PythonGraph {
            data,
            meta,
            totals,
            record_at,
            folded,
            fold_target,
            class_of,
            class_names,
            shallow,
            big_shallow,
            edge_start,
            edges,
            roots: Vec::new(),
            strings,
            holder_classes,
            root_labels: Vec::new(),
            chunks,
            attribute_names,
            sites,
        };
        graph.roots = graph.find_roots(&roots);
        graph.root_labels = roots
            .iter()
            .filter(|r| r.1 == ROOT_MODULES && r.2 != NO_STRING)
            .filter_map(|&(id, _, label)| Some((graph.index_of(id)?, label)))
            .collect();
        graph.root_labels.sort_unstable();
        Ok(graph)
    }

    /// The snapshot's own roots, then objects nothing refers to, then one
    /// object of every cycle still not reached.
    fn find_roots(&self, named: &[(u64, u8, u32)]) -> Vec<(u32, u8)> {
        let n = self.len();
        let mut kind = vec![u8::MAX; n];
        for &(id, k, _) in named {
            if let Some(node) = self.index_of(id) {
                kind[node as usize] = kind[node as usize].min(k);
            }
        }
        let mut referenced = vec![false; n];
        for &t in self.edges.iter() {
            referenced[t as usize] = true;
        }
        for node in 0..n {
            if kind[node] == u8::MAX && !referenced[node] {
                kind[node] = ROOT_UNREFERENCED;
            }
        }
        let mut reached = vec![false; n];
        let mut stack: Vec<u32> = (0..n as u32).filter(|&v| kind[v as usize] != u8::MAX).collect();
        let visit = |stack: &mut Vec<u32>, reached: &mut Vec<bool>| {
            while let Some(v) = stack.pop() {
                if std::mem::replace(&mut reached[v as usize], true) {
                    continue;
                }
                for &w in self.successors(v) {
                    if !reached[w as usize] {
                        stack.push(w);
                    }
                }
            }
        };
        visit(&mut stack, &mut reached);
        for node in 0..n {
            if !reached[node] {
                kind[node] = ROOT_CYCLE;
                stack.push(node as u32);
                visit(&mut stack, &mut reached);
            }
        }
        kind.iter().enumerate().filter(|(_, &k)| k != u8::MAX).map(|(v, &k)| (v as u32, k)).collect()
    }

    fn string(&self, s: u32) -> &'a str {
        let Some(&(at, len)) = self.strings.get(s as usize) else { return "?" };
        std::str::from_utf8(&self.data[at as usize..(at + len) as usize]).unwrap_or("?")
    }

    fn record(&self, node: u32) -> Record<'a> {
        read_record(self.data, &self.chunks, self.record_at.get(node as usize))
    }

    /// The name of a bulk object's reference by its position: an item's index,
    /// or the attribute its class's names record gives.
    fn positional_name(&self, record: &Record, class: &str, i: u32) -> Option<String> {
        if matches!(class, "list" | "tuple") {
            return Some(format!("[{i}]"));
        }
        let key = (record.type_name, record.edge_count() as u32);
        let at = self.attribute_names.binary_search_by_key(&key, |a| a.0).ok().map(|k| self.attribute_names[k].1)? as usize;
        let name = le_u32(self.data.get(at + 4 * i as usize..)?);
        (name != NO_STRING).then(|| self.string(name).to_string())
    }

    fn label(&self, node: u32) -> Option<&'a str> {
        let label = self.record(node).label;
        (label != NO_STRING).then(|| self.string(label))
    }

    fn resolve(&self, id: u64) -> Option<u32> {
        let id = match self.fold_target.binary_search_by_key(&id, |f| f.0) {
            Ok(i) => self.fold_target[i].1,
            Err(_) => id,
        };
        self.index_of(id)
    }

    /// The node's own record and the records of the dicts folded into it.
    fn records_of(&self, node: u32) -> impl Iterator<Item = Record<'a>> + '_ {
        let first = self.folded.partition_point(|f| f.0 < node);
        let dicts = self.folded[first..].iter().take_while(move |f| f.0 == node);
        std::iter::once(self.record(node)).chain(dicts.map(|f| read_record(self.data, &self.chunks, f.1)))
    }
}

impl ObjectGraph for PythonGraph<'_> {
    fn len(&self) -> usize {
        self.record_at.len()
    }
    fn successors(&self, node: u32) -> &[u32] {
        let v = node as usize;
        &self.edges[self.edge_start[v] as usize..self.edge_start[v + 1] as usize]
    }
    fn shallow(&self, node: u32) -> u64 {
        match self.shallow[node as usize] {
            u32::MAX => self.big_shallow.binary_search_by_key(&node, |b| b.0).map_or(u32::MAX as u64, |i| self.big_shallow[i].1),
            size => size as u64,
        }
    }
    fn class_of(&self) -> &[u32] {
        &self.class_of
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn roots(&self) -> &[(u32, u8)] {
        &self.roots
    }
    fn root_kind_name(&self, kind: u8) -> String {
        match kind {
            ROOT_MODULES => "sys.modules",
            ROOT_FRAME => "a thread's frame",
            ROOT_UNREFERENCED => "held by C code or the interpreter",
            ROOT_CYCLE => "a cycle nothing else reaches",
            _ => "root",
        }
        .into()
    }
    fn id(&self, node: u32) -> u64 {
        self.record(node).id
    }
    /// Nodes are in id order: a binary search over the records.
    fn index_of(&self, id: u64) -> Option<u32> {
        let (mut low, mut high) = (0usize, self.len());
        while low < high {
            let mid = (low + high) / 2;
            match self.id(mid as u32).cmp(&id) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }
    /// The first reference from `from` to `to` that has a name (an unnamed one may come first).
    fn edge_name(&self, from: u32, to: u32) -> Option<String> {
        let class = self.class_name(from);
        self.records_of(from).find_map(|record| {
            record.edges().find_map(|(target, kind, value)| {
                if kind == EDGE_UNNAMED || self.resolve(target) != Some(to) {
                    return None;
                }
                match kind {
                    EDGE_NAMED => Some(self.string(value).to_string()),
                    EDGE_INDEX => Some(format!("[{value}]")),
                    EDGE_POSITION => self.positional_name(&record, class, value),
                    _ => Some("(key)".into()),
                }
            })
        })
    }
    fn display_class(&self, node: u32) -> String {
        if let Ok(i) = self.root_labels.binary_search_by_key(&node, |r| r.0) {
            return self.string(self.root_labels[i].1).to_string();
        }
        let class = self.class_name(node);
        match (class, self.label(node)) {
            ("module", Some(name)) => format!("module {name}"),
            ("type", Some(name)) => format!("class {name}"),
            ("function", Some(name)) => format!("function {name}"),
            ("frame", Some(name)) => format!("frame {name}"),
            _ => class.to_string(),
        }
    }
    fn role(&self, node: u32) -> Role {
        let class = self.class_of[node as usize];
        if self.holder_classes.contains(&class) {
            return Role::Holder;
        }
        match self.record(node).length {
            NO_LENGTH => Role::Object,
            n if matches!(self.class_names[class as usize].as_str(), "list" | "tuple" | "dict" | "set" | "frozenset") => Role::Array(n),
            _ => Role::Object,
        }
    }
    /// `app.models.Item` → `Item`; names with a space (`module app.cache`) and `sys.modules` stay whole.
    fn short_name<'n>(&self, name: &'n str) -> &'n str {
        if name.contains(' ') || name == "sys.modules" {
            name
        } else {
            crate::names::short_name(name)
        }
    }
    fn allocation_sites(&self) -> Vec<leakscope_model::analysis::AllocationSite> {
        let mut sites: Vec<_> = self
            .sites
            .iter()
            .map(|&(file, line, size_bytes, blocks)| leakscope_model::analysis::AllocationSite { file: self.string(file).to_string(), line, size_bytes, blocks })
            .collect();
        sites.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then(a.file.cmp(&b.file)).then(a.line.cmp(&b.line)));
        sites.truncate(50);
        sites
    }
    fn facts(&self) -> DumpFacts {
        DumpFacts {
            format: "python",
            runtime: "python",
            id_size: 8,
            timestamp_ms: self.meta.time_ms,
            classes: self.class_names.len() as u64,
            ..DumpFacts::default()
        }
    }
}
