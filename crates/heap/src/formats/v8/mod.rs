//! V8 heap snapshots (`.heapsnapshot`, written by Node.js and Chrome): the
//! JSON is read straight from the mapped file by a hand-written scanner,
//! because snapshots reach gigabytes and a `serde_json::Value` of one would
//! need ten times its size; only the small `snapshot` header goes through
//! serde. The field layout comes from `snapshot.meta`, never from fixed offsets.
//!
//! Semantics follow Chrome DevTools: the synthetic root's children (with the
//! children of `(GC roots)`) are the roots, weak edges do not retain,
//! shortcut edges retain only from the root, shallow size is `self_size`.

mod cold;
mod scan;

use std::borrow::Cow;

use serde::Deserialize;

use crate::graph::{DumpFacts, ObjectGraph, Role};
use crate::HeapError;
use cold::{ColdIndex, BLOCK};
use scan::Scanner;

#[derive(Deserialize)]
struct Header {
    meta: Meta,
    node_count: u64,
    edge_count: u64,
}

#[derive(Deserialize)]
struct Meta {
    node_fields: Vec<String>,
    /// The first entry lists the node type names; the rest describe other fields.
    node_types: Vec<serde_json::Value>,
    edge_fields: Vec<String>,
    edge_types: Vec<serde_json::Value>,
}

/// Where each needed value sits in a node's or an edge's run of numbers.
#[derive(Clone)]
struct Layout {
    node_fields: usize,
    node_type: usize,
    node_name: usize,
    node_id: usize,
    node_self_size: usize,
    node_edge_count: usize,
    edge_fields: usize,
    edge_type: usize,
    edge_name: usize,
    edge_to: usize,
    node_type_names: Vec<String>,
    edge_type_names: Vec<String>,
}

impl Layout {
    fn from_meta(meta: &Meta, offset: u64) -> Result<Self, HeapError> {
        let corrupt = |reason: String| HeapError::Corrupt { offset, reason };
        let find = |fields: &[String], name: &str, what: &str| {
            fields.iter().position(|f| f == name).ok_or_else(|| corrupt(format!("snapshot.meta.{what} has no \"{name}\"")))
        };
        let names = |types: &[serde_json::Value], what: &str| -> Result<Vec<String>, HeapError> {
            let list = types.first().and_then(|t| t.as_array()).ok_or_else(|| corrupt(format!("snapshot.meta.{what} has no list of type names")))?;
            Ok(list.iter().map(|t| t.as_str().unwrap_or("?").to_string()).collect())
        };
        let layout = Layout {
            node_fields: meta.node_fields.len(),
            node_type: find(&meta.node_fields, "type", "node_fields")?,
            node_name: find(&meta.node_fields, "name", "node_fields")?,
            node_id: find(&meta.node_fields, "id", "node_fields")?,
            node_self_size: find(&meta.node_fields, "self_size", "node_fields")?,
            node_edge_count: find(&meta.node_fields, "edge_count", "node_fields")?,
            edge_fields: meta.edge_fields.len(),
            edge_type: find(&meta.edge_fields, "type", "edge_fields")?,
            edge_name: find(&meta.edge_fields, "name_or_index", "edge_fields")?,
            edge_to: find(&meta.edge_fields, "to_node", "edge_fields")?,
            node_type_names: names(&meta.node_types, "node_types")?,
            edge_type_names: names(&meta.edge_types, "edge_types")?,
        };
        if layout.node_type_names.len() > 255 || layout.edge_type_names.len() > 255 {
            return Err(corrupt("more than 255 node or edge types".into()));
        }
        Ok(layout)
    }

    fn edge_type(&self, name: &str) -> u8 {
        self.edge_type_names.iter().position(|t| t == name).map(|i| i as u8).unwrap_or(u8::MAX)
    }

    fn node_type(&self, name: &str) -> u8 {
        self.node_type_names.iter().position(|t| t == name).map(|i| i as u8).unwrap_or(u8::MAX)
    }
}

/// Root kinds (see `root_kind_name`).
const ROOT_GC: u8 = 1;
const ROOT_GLOBAL: u8 = 2;
const ROOT_EMBEDDER: u8 = 3;

/// A snapshot's object graph: the columns every walk needs per node (type,
/// size, class) and strong edges in CSR form in memory; node ids and names,
/// edge types and names, and strings left in the mapped file until asked for
/// (see `cold`).
pub struct V8Graph<'a> {
    data: &'a [u8],
    /// Per string: byte range of its JSON text (quotes excluded) and whether it has escapes.
    strings: Vec<(u64, u32, bool)>,
    node_type: Vec<u8>,
    self_size: Vec<u32>,
    edge_start: Vec<u32>,
    edges: Vec<u32>,
    cold: ColdIndex,
    class_of: Vec<u32>,
    class_names: Vec<String>,
    roots: Vec<(u32, u8)>,
    /// (object id, node) sorted, made on the first lookup by id (an analysis
    /// never needs it: reading and sorting 5 M ids would be a tenth of its time).
    by_id: std::sync::OnceLock<Vec<(u32, u32)>>,
    /// Element counts already read from the file (sentences ask for the same
    /// big arrays again and again, and a million-element one is a 20 MB read).
    element_counts: std::sync::Mutex<std::collections::HashMap<u32, u64>>,
    /// Global objects (shortcut targets of the root), sorted.
    globals: Vec<u32>,
    types: TypeCodes,
    node_type_names: Vec<String>,
}

/// Node and edge type codes this file uses for the names the analysis needs.
#[derive(Clone, Copy)]
struct TypeCodes {
    hidden: u8,
    array: u8,
    string: u8,
    object: u8,
    code: u8,
    closure: u8,
    native: u8,
    synthetic: u8,
    concatenated_string: u8,
    sliced_string: u8,
    edge_element: u8,
    edge_hidden: u8,
    edge_shortcut: u8,
}

impl<'a> V8Graph<'a> {
    /// Parses a whole snapshot. `reading` gets the byte position as the scan
    /// advances; `building` is called once the numbers are read.
    pub fn parse(data: &'a [u8], reading: &(dyn Fn(usize) + Sync), building: &dyn Fn()) -> Result<Self, HeapError> {
        let t0 = std::time::Instant::now();
        let timing = std::env::var_os("LEAKSCOPE_TIMING").is_some();
        let lap = |what: &str| {
            if timing {
                eprintln!("  v8 {what}: {} ms", t0.elapsed().as_millis());
            }
        };
        let mut s = Scanner::new(data);
        s.expect(b'{', "the snapshot's opening brace")?;
        let mut header: Option<(Header, Layout)> = None;
        let mut strings: Option<Vec<(u64, u32, bool)>> = None;
        // The nodes and the edges (nine tenths of the file) are read on threads
        // of their own while this one walks on to the strings: the top level
        // only needs to find where each number array ends.
        let (nodes, edges) = std::thread::scope(|scope| -> Result<_, HeapError> {
            let mut nodes_job = None;
            let mut edges_job = None;
            loop {
                let key_at = s.pos() as u64;
                let key = s.key()?;
                match key {
                    b"snapshot" => {
                        let (h, end): (Header, usize) = s.serde_value()?;
                        let layout = Layout::from_meta(&h.meta, key_at)?;
                        s.seek(end);
                        header = Some((h, layout));
                    }
                    b"nodes" | b"edges" => {
                        let (h, layout) = header.as_ref().ok_or_else(|| HeapError::Corrupt {
                            offset: key_at,
                            reason: format!("\"{}\" comes before \"snapshot\"", String::from_utf8_lossy(key)),
                        })?;
                        let (at, node_count, edge_count, layout) = (s.pos(), h.node_count, h.edge_count, layout.clone());
                        s.skip_number_array()?;
                        let mut part = Scanner::new(data);
                        part.seek(at);
                        if key == b"nodes" {
                            nodes_job = Some((key_at, scope.spawn(move || NodeColumns::read(&mut part, node_count, &layout, reading))));
                        } else {
                            edges_job = Some((key_at, scope.spawn(move || RawEdges::read(&mut part, node_count, edge_count, &layout, reading))));
                        }
                    }
                    b"strings" => {
                        strings = Some(s.string_array(reading)?);
                        lap("strings read");
                    }
                    _ => s.skip_value()?,
                }
                if !s.next_member()? {
                    break;
                }
            }
            let at_end = s.pos() as u64;
            let missing = |what: &'static str| HeapError::Truncated { offset: at_end, what };
            // In file order, so a broken file reports its first fault.
            let (nodes_at, nodes) = nodes_job.ok_or_else(|| missing("the \"nodes\" array"))?;
            let nodes = crate::join(nodes)?;
            lap("nodes read");
            let (edges_at, edges) = edges_job.ok_or_else(|| missing("the \"edges\" array"))?;
            let edges = crate::join(edges)?;
            lap("edges read");
            let (h, layout) = header.as_ref().ok_or_else(|| missing("the \"snapshot\" header"))?;
            let edges = EdgeColumns::from_raw(edges, &nodes, h.edge_count, layout, edges_at.max(nodes_at))?;
            lap("edges linked");
            Ok((nodes, edges))
        })?;
        let at_end = s.pos() as u64;
        let missing = |what: &'static str| HeapError::Truncated { offset: at_end, what };
        let (_, layout) = header.ok_or_else(|| missing("the \"snapshot\" header"))?;
        let strings = strings.ok_or_else(|| missing("the \"strings\" array"))?;
        building();
        let graph = Self::assemble(data, layout, nodes, edges, strings, at_end);
        lap("assembled");
        graph
    }

    fn assemble(
        data: &'a [u8],
        layout: Layout,
        nodes: NodeColumns,
        edges: EdgeColumns,
        strings: Vec<(u64, u32, bool)>,
        at_end: u64,
    ) -> Result<Self, HeapError> {
        let types = TypeCodes {
            hidden: layout.node_type("hidden"),
            array: layout.node_type("array"),
            string: layout.node_type("string"),
            object: layout.node_type("object"),
            code: layout.node_type("code"),
            closure: layout.node_type("closure"),
            native: layout.node_type("native"),
            synthetic: layout.node_type("synthetic"),
            concatenated_string: layout.node_type("concatenated string"),
            sliced_string: layout.node_type("sliced string"),
            edge_element: layout.edge_type("element"),
            edge_hidden: layout.edge_type("hidden"),
            edge_shortcut: layout.edge_type("shortcut"),
        };
        let n = nodes.node_type.len();
        if n == 0 {
            return Err(HeapError::Corrupt { offset: at_end, reason: "the snapshot has no nodes (not even the synthetic root)".into() });
        }
        // Node names and the names of named edges (element and hidden edges carry an index) are string indices.
        let strings_len = strings.len() as u64;
        let past_the_strings = |index: u64, offset: u64| HeapError::Corrupt { offset, reason: format!("string index {index} is past the {strings_len} strings") };
        if let Some(&index) = nodes.node_name.iter().find(|&&s| s as u64 >= strings_len) {
            return Err(past_the_strings(index as u64, at_end));
        }
        if let Some((index, offset)) = edges.largest_name.filter(|&(index, _)| index >= strings_len) {
            return Err(past_the_strings(index, offset));
        }
        let cold = ColdIndex {
            node_at: nodes.node_at,
            raw_edge_at: edges.raw_edge_at,
            strong_raw: edges.strong_raw,
            root_raw_edges: nodes.edge_count.first().copied().unwrap_or(0) as u64,
            node_fields: layout.node_fields,
            node_id_field: layout.node_id,
            node_name_field: layout.node_name,
            edge_fields: layout.edge_fields,
            edge_type_field: layout.edge_type,
            edge_name_field: layout.edge_name,
            weak: layout.edge_type("weak"),
            shortcut: types.edge_shortcut,
        };
        let mut graph = V8Graph {
            data,
            strings,
            node_type: nodes.node_type,
            self_size: nodes.self_size,
            edge_start: edges.start,
            edges: edges.to,
            cold,
            class_of: Vec::new(),
            class_names: Vec::new(),
            roots: Vec::new(),
            by_id: std::sync::OnceLock::new(),
            element_counts: Default::default(),
            globals: Vec::new(),
            types,
            node_type_names: layout.node_type_names,
        };
        // The names are needed once, for the classes, and then read from the file.
        (graph.class_of, graph.class_names) = graph.class_table(&nodes.node_name);
        drop(nodes.node_name);
        graph.find_roots();
        Ok(graph)
    }

    /// Histogram class per node, named as DevTools' Summary view names them.
    fn class_table(&self, node_name: &[u32]) -> (Vec<u32>, Vec<String>) {
        let mut names: Vec<String> = Vec::new();
        let mut by_name: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        // Most nodes share a (type, name string) pair: look each pair up once.
        let mut by_pair: crate::IdMap<u32> = crate::IdMap::default();
        let mut class_of = Vec::with_capacity(self.node_type.len());
        for v in 0..self.node_type.len() {
            let (t, name) = (self.node_type[v], node_name[v]);
            let named = t == self.types.object || t == self.types.native;
            let key = (t as u64) << 32 | if named { name as u64 } else { 0 };
            let class = match by_pair.get(&key) {
                Some(&c) => c,
                None => {
                    let text = self.class_name_for(t, name);
                    let c = *by_name.entry(text.clone()).or_insert_with(|| {
                        names.push(text);
                        (names.len() - 1) as u32
                    });
                    by_pair.insert(key, c);
                    c
                }
            };
            class_of.push(class);
        }
        (class_of, names)
    }

    fn class_name_for(&self, node_type: u8, name: u32) -> String {
        let t = self.types;
        match node_type {
            x if x == t.hidden => "(system)".into(),
            x if x == t.object || x == t.native => {
                let name = self.string(name);
                if name.is_empty() { "(anonymous)".into() } else { name.into_owned() }
            }
            x if x == t.code => "(compiled code)".into(),
            x => format!("({})", self.node_type_names.get(x as usize).map(String::as_str).unwrap_or("unknown")),
        }
    }

    /// The root's children, with `(GC roots)` replaced by its own children.
    fn find_roots(&mut self) {
        let mut roots = Vec::new();
        let kinds = self.cold.strong_edges(self.data, self.edge_range(0));
        for (k, (kind, _)) in self.edge_range(0).zip(kinds) {
            let child = self.edges[k];
            if child == 0 {
                continue;
            }
            if kind == self.types.edge_shortcut {
                roots.push((child, ROOT_GLOBAL));
                self.globals.push(child);
            } else if self.node_type[child as usize] == self.types.synthetic && self.node_name(child) == "(GC roots)" {
                roots.push((child, ROOT_GC));
                for j in self.edge_range(child) {
                    roots.push((self.edges[j], ROOT_GC));
                }
            } else {
                roots.push((child, ROOT_EMBEDDER));
            }
        }
        roots.sort_unstable_by_key(|r| r.0);
        roots.dedup_by_key(|r| r.0);
        self.roots = roots;
        self.globals.sort_unstable();
        self.globals.dedup();
    }

    fn edge_range(&self, node: u32) -> std::ops::Range<usize> {
        self.edge_start[node as usize] as usize..self.edge_start[node as usize + 1] as usize
    }

    /// A string of the snapshot's table, decoded from the mapped file.
    pub fn string(&self, index: u32) -> Cow<'a, str> {
        let Some(&(start, len, escaped)) = self.strings.get(index as usize) else { return Cow::Borrowed("") };
        let raw = &self.data[start as usize..start as usize + len as usize];
        if !escaped {
            return String::from_utf8_lossy(raw);
        }
        let quoted = &self.data[start as usize - 1..start as usize + len as usize + 1];
        // Lone surrogates (V8 writes them for broken UTF-16) are not JSON serde accepts: show the raw text.
        serde_json::from_slice::<String>(quoted).map(Cow::Owned).unwrap_or_else(|_| String::from_utf8_lossy(raw))
    }

    pub fn node_type_name(&self, node: u32) -> &str {
        self.node_type_names.get(self.node_type[node as usize] as usize).map(String::as_str).unwrap_or("unknown")
    }

    /// The node's own name in the snapshot (constructor, function name, string content).
    pub fn node_name(&self, node: u32) -> Cow<'a, str> {
        let index = self.cold.node_field(self.data, node, self.cold.node_name_field);
        index.and_then(|i| u32::try_from(i).ok()).map(|i| self.string(i)).unwrap_or(Cow::Borrowed(""))
    }

    /// Elements of an array-like node: its element edges, else (V8's internal
    /// arrays, such as a Map's table) every reference but the one to its shape.
    fn element_count(&self, node: u32) -> u64 {
        let known = |counts: &std::collections::HashMap<u32, u64>| counts.get(&node).copied();
        if let Some(count) = known(&self.element_counts.lock().unwrap_or_else(|p| p.into_inner())) {
            return count;
        }
        let count = self.count_elements(node);
        self.element_counts.lock().unwrap_or_else(|p| p.into_inner()).insert(node, count);
        count
    }

    fn count_elements(&self, node: u32) -> u64 {
        let edges = self.cold.strong_edges(self.data, self.edge_range(node));
        let elements = edges.iter().filter(|&&(kind, _)| kind == self.types.edge_element).count();
        if elements > 0 {
            return elements as u64;
        }
        edges.iter().filter(|&&(_, name)| u32::try_from(name).map_or(true, |name| self.string(name) != "map")).count() as u64
    }
}

impl ObjectGraph for V8Graph<'_> {
    fn len(&self) -> usize {
        self.node_type.len()
    }
    fn successors(&self, node: u32) -> &[u32] {
        &self.edges[self.edge_range(node)]
    }
    fn shallow(&self, node: u32) -> u64 {
        self.self_size[node as usize] as u64
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
            ROOT_GC => "GC root",
            ROOT_GLOBAL => "global object",
            ROOT_EMBEDDER => "embedder root",
            _ => "root",
        }
        .into()
    }
    fn id(&self, node: u32) -> u64 {
        self.cold.node_field(self.data, node, self.cold.node_id_field).unwrap_or(0)
    }
    fn ids(&self) -> Vec<u64> {
        self.cold.every_node_field(self.data, self.len(), self.cold.node_id_field)
    }
    fn index_of(&self, id: u64) -> Option<u32> {
        let id = u32::try_from(id).ok()?;
        let by_id = self.by_id.get_or_init(|| {
            // Every id was checked to fit in 32 bits when the nodes were read.
            let mut pairs: Vec<(u32, u32)> = self.ids().into_iter().enumerate().map(|(v, id)| (id as u32, v as u32)).collect();
            pairs.sort_unstable();
            pairs
        });
        let at = by_id.binary_search_by_key(&id, |&(id, _)| id).ok()?;
        Some(by_id[at].1)
    }

    fn edge_name(&self, from: u32, to: u32) -> Option<String> {
        let k = self.edge_range(from).find(|&k| self.edges[k] == to)?;
        let &(kind, name) = self.cold.strong_edges(self.data, k..k + 1).first()?;
        if kind == self.types.edge_element || kind == self.types.edge_hidden {
            Some(format!("[{name}]"))
        } else {
            Some(self.string(u32::try_from(name).ok()?).into_owned())
        }
    }
    fn display_class(&self, node: u32) -> String {
        let t = self.node_type[node as usize];
        let class = self.class_name(node);
        let name = self.node_name(node);
        let types = self.types;
        if t == types.closure || t == types.code {
            if name.is_empty() { class.to_string() } else { format!("{class} {name}") }
        } else if t == types.string || t == types.concatenated_string || t == types.sliced_string {
            format!("{class} {:?}", shorten(&name, 40))
        } else if t == types.synthetic || t == types.array || t == types.hidden {
            if name.is_empty() { class.to_string() } else { name.into_owned() }
        } else {
            class.to_string()
        }
    }
    fn role(&self, node: u32) -> Role {
        if self.globals.binary_search(&node).is_ok() {
            return Role::Holder;
        }
        let t = self.node_type[node as usize];
        if t == self.types.array || (t == self.types.object && self.class_name(node) == "Array") {
            return Role::Array(self.element_count(node));
        }
        Role::Object
    }
    fn facts(&self) -> DumpFacts {
        DumpFacts { format: "v8", runtime: "node", classes: self.class_names.len() as u64, ..DumpFacts::default() }
    }
    /// JavaScript names have no packages to strip.
    fn short_name<'n>(&self, name: &'n str) -> &'n str {
        name
    }
}

fn shorten(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The node columns as read from the `nodes` array (ids are checked, not kept: see `cold`).
struct NodeColumns {
    node_type: Vec<u8>,
    node_name: Vec<u32>,
    self_size: Vec<u32>,
    edge_count: Vec<u32>,
    /// Byte offset of every `BLOCK`-th node.
    node_at: Vec<u64>,
}

impl NodeColumns {
    fn read(s: &mut Scanner, node_count: u64, layout: &Layout, reading: &dyn Fn(usize)) -> Result<Self, HeapError> {
        let start = s.pos() as u64;
        // Never reserve by an unchecked count: each node takes at least two bytes per field.
        let room = (s.remaining() / (2 * layout.node_fields.max(1))) as u64;
        let expected = node_count.min(room) as usize;
        let mut columns = NodeColumns {
            node_type: Vec::with_capacity(expected),
            node_name: Vec::with_capacity(expected),
            self_size: Vec::with_capacity(expected),
            edge_count: Vec::with_capacity(expected),
            node_at: Vec::with_capacity(expected / BLOCK + 1),
        };
        let fields = layout.node_fields;
        let mut field = 0usize;
        let mut values = [0u64; 16];
        let too_wide = fields > values.len();
        if too_wide || fields == 0 {
            return Err(HeapError::Corrupt { offset: start, reason: format!("{fields} node fields is not a layout this reader knows") });
        }
        let node_types = layout.node_type_names.len() as u64;
        let mut failure: Option<HeapError> = None;
        s.uint_array(reading, |value, at| {
            if field == 0 && columns.node_type.len() % BLOCK == 0 {
                columns.node_at.push(at as u64);
            }
            values[field] = value;
            field += 1;
            if field == fields {
                field = 0;
                let t = values[layout.node_type];
                let (name, id, size, count) =
                    (values[layout.node_name], values[layout.node_id], values[layout.node_self_size], values[layout.node_edge_count]);
                if t >= node_types || name > u32::MAX as u64 || id > u32::MAX as u64 || count > u32::MAX as u64 {
                    failure = Some(HeapError::Corrupt { offset: at as u64, reason: "a node field is out of range (type, name, id or edge count)".into() });
                    return false;
                }
                columns.node_type.push(t as u8);
                columns.node_name.push(name as u32);
                // A single object over 4 GiB is not a thing V8 makes; saturate rather than wrap.
                columns.self_size.push(size.min(u32::MAX as u64) as u32);
                columns.edge_count.push(count as u32);
            }
            true
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
        if field != 0 {
            return Err(HeapError::Corrupt { offset: s.pos() as u64, reason: format!("the nodes array ends inside a node ({field} of {fields} fields)") });
        }
        let n = columns.node_type.len() as u64;
        if n != node_count {
            return Err(HeapError::Corrupt { offset: start, reason: format!("snapshot.node_count says {node_count} nodes, the nodes array holds {n}") });
        }
        if n >= u32::MAX as u64 {
            return Err(HeapError::Corrupt { offset: start, reason: format!("{n} nodes exceed this analyser's 4 billion limit") });
        }
        Ok(columns)
    }
}

/// `to_node` is an offset into the nodes array: divided by the field count
/// once per edge, so the usual counts get a division by a constant.
#[inline]
fn divide(value: u64, by: u64) -> (u64, u64) {
    match by {
        7 => (value / 7, value % 7),
        6 => (value / 6, value % 6),
        5 => (value / 5, value % 5),
        _ => (value / by, value % by),
    }
}

/// Every edge as the `edges` array lists it (checked, not yet tied to the
/// node it leaves): read without the nodes, so both arrays are read at once.
/// Names are checked, not kept (see `cold`).
struct RawEdges {
    to: Vec<u32>,
    kind: Vec<u8>,
    /// Byte offset of every `BLOCK`-th edge.
    edge_at: Vec<u64>,
    /// The largest string index a named edge uses, and where (checked once the strings are read).
    largest_name: Option<(u64, u64)>,
}

impl RawEdges {
    fn read(s: &mut Scanner, node_count: u64, edge_count: u64, layout: &Layout, reading: &dyn Fn(usize)) -> Result<Self, HeapError> {
        let start_at = s.pos() as u64;
        let fields = layout.edge_fields;
        if fields == 0 || fields > 16 {
            return Err(HeapError::Corrupt { offset: start_at, reason: format!("{fields} edge fields is not a layout this reader knows") });
        }
        // The header's count, but never more than the bytes left could hold (two per field).
        let expected = edge_count.min((s.remaining() / (2 * fields)) as u64) as usize;
        let mut edges = RawEdges {
            to: Vec::with_capacity(expected),
            kind: Vec::with_capacity(expected),
            edge_at: Vec::with_capacity(expected / BLOCK + 1),
            largest_name: None,
        };
        let edge_types = layout.edge_type_names.len() as u64;
        // Element and hidden edges carry an index, the others a string index.
        let (element, hidden) = (layout.edge_type("element") as u64, layout.edge_type("hidden") as u64);
        let node_fields = layout.node_fields as u64;
        let mut values = [0u64; 16];
        let mut field = 0usize;
        let mut failure: Option<HeapError> = None;
        s.uint_array(reading, |value, at| {
            if field == 0 && edges.to.len() % BLOCK == 0 {
                edges.edge_at.push(at as u64);
            }
            values[field] = value;
            field += 1;
            if field < fields {
                return true;
            }
            field = 0;
            let (t, name, to) = (values[layout.edge_type], values[layout.edge_name], values[layout.edge_to]);
            let (target, rest) = divide(to, node_fields);
            if t >= edge_types || name > u32::MAX as u64 || rest != 0 || target >= node_count || edges.to.len() >= u32::MAX as usize - 1 {
                failure = Some(HeapError::Corrupt { offset: at as u64, reason: format!("edge {} is out of range (type {t}, to_node {to})", edges.to.len()) });
                return false;
            }
            if t != element && t != hidden && edges.largest_name.is_none_or(|(largest, _)| name > largest) {
                edges.largest_name = Some((name, at as u64));
            }
            edges.to.push(target as u32);
            edges.kind.push(t as u8);
            true
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
        if field != 0 {
            return Err(HeapError::Corrupt { offset: s.pos() as u64, reason: format!("the edges array ends inside an edge ({field} of {fields} fields)") });
        }
        Ok(edges)
    }
}

/// Strong edges in CSR order, with where to find their types and names in the file.
struct EdgeColumns {
    start: Vec<u32>,
    to: Vec<u32>,
    raw_edge_at: Vec<u64>,
    /// Raw edge index of every `BLOCK`-th strong edge.
    strong_raw: Vec<u64>,
    largest_name: Option<(u64, u64)>,
}

impl EdgeColumns {
    /// Ties the edges to the nodes they leave (in order, by each node's edge
    /// count) and keeps the strong ones, in place.
    fn from_raw(raw: RawEdges, nodes: &NodeColumns, edge_count: u64, layout: &Layout, offset: u64) -> Result<Self, HeapError> {
        let total: u64 = nodes.edge_count.iter().map(|&c| c as u64).sum();
        if total != edge_count {
            return Err(HeapError::Corrupt { offset, reason: format!("snapshot.edge_count says {edge_count} edges, the nodes' edge counts add up to {total}") });
        }
        if total != raw.to.len() as u64 {
            return Err(HeapError::Corrupt { offset, reason: format!("the edges array holds {} edges, the nodes' edge counts add up to {total}", raw.to.len()) });
        }
        let (weak, shortcut) = (layout.edge_type("weak"), layout.edge_type("shortcut"));
        let RawEdges { mut to, kind, edge_at, largest_name } = raw;
        let mut start = Vec::with_capacity(nodes.edge_count.len() + 1);
        let mut strong_raw = Vec::with_capacity(to.len() / BLOCK + 1);
        let mut kept = 0usize;
        let mut read = 0usize;
        for (from, &count) in nodes.edge_count.iter().enumerate() {
            start.push(kept as u32);
            for _ in 0..count {
                let t = kind[read];
                // Weak edges never retain; shortcuts retain only from the root (they mark its global objects).
                if t != weak && (t != shortcut || from == 0) {
                    if kept % BLOCK == 0 {
                        strong_raw.push(read as u64);
                    }
                    to[kept] = to[read];
                    kept += 1;
                }
                read += 1;
            }
        }
        start.push(kept as u32);
        drop(kind);
        to.truncate(kept);
        to.shrink_to_fit();
        Ok(EdgeColumns { start, to, raw_edge_at: edge_at, strong_raw, largest_name })
    }
}
