//! The object graph in compact arrays: object ids sorted and mapped to dense
//! u32 indices, outgoing references in CSR form, shallow sizes as the JVM
//! counts them.

use std::collections::HashMap;

use crate::formats::hprof::{primitive_array_name, value_size, Kind, Parsed, T_OBJECT};
use crate::names::source_name;
use crate::reader::read_id;
use crate::{HeapError, IdMap};

/// How the JVM lays objects out; the HPROF file does not say, so it is
/// implied: 4-byte ids mean a 32-bit VM; 8-byte ids mean a 64-bit VM with
/// compressed oops and class pointers unless the heap is too big for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeModel {
    pub header: u64,
    pub array_header: u64,
    pub reference: u64,
    pub compressed_oops: bool,
}

const ALIGN: u64 = 8;

pub(crate) fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

impl SizeModel {
    pub fn for_dump(id_size: usize, compressed_oops: bool) -> Self {
        match (id_size, compressed_oops) {
            (4, _) => SizeModel { header: 8, array_header: 12, reference: 4, compressed_oops: false },
            (_, true) => SizeModel { header: 12, array_header: 16, reference: 4, compressed_oops: true },
            (_, false) => SizeModel { header: 16, array_header: 20, reference: 8, compressed_oops: false },
        }
    }

    pub(crate) fn array(&self, element: u64, n: u64) -> u64 {
        // Elements start aligned to their own size (matters only without compressed class pointers).
        let base = self.array_header.div_ceil(element.clamp(1, 8)) * element.clamp(1, 8);
        align(base + element * n)
    }
}

/// Flattened instance layout of one class (own fields, then superclasses').
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// (byte offset in the dump's instance data, field name string id).
    pub refs: Vec<(u32, u64)>,
    /// The class this layout belongs to.
    pub class_id: u64,
    /// Superclass id (0 for java.lang.Object).
    pub super_id: u64,
    /// This class's own fields only: primitive bytes and reference count.
    pub own_primitive_bytes: u64,
    pub own_refs: u64,
    /// What HotSpot adds for this class itself (see `VM_EXTRAS`).
    pub own_extra: VmExtra,
}

/// Bytes HotSpot adds that the dump does not list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmExtra {
    /// VM-injected fields of fixed size and of reference size.
    pub bytes: u64,
    pub refs: u64,
    /// `@Contended` groups pad the class out to an aligned end that subclasses start after.
    pub aligned_end: bool,
}

/// HotSpot's injected instance fields and contended padding, by the class
/// that declares them (inherited by subclasses). Checked against
/// `jmap -histo:live` on JDK 17.
const VM_EXTRAS: &[(&str, VmExtra)] = &[
    ("java/lang/ClassLoader", VmExtra { bytes: 8, refs: 0, aligned_end: false }), // loader_data
    ("java/lang/Module", VmExtra { bytes: 8, refs: 0, aligned_end: false }),      // module_entry
    ("java/lang/invoke/MemberName", VmExtra { bytes: 8, refs: 0, aligned_end: false }), // vmindex
    ("java/lang/invoke/ResolvedMethodName", VmExtra { bytes: 8, refs: 1, aligned_end: false }), // vmtarget, vmholder
    ("java/lang/invoke/MethodHandleNatives$CallSiteContext", VmExtra { bytes: 16, refs: 0, aligned_end: false }),
    // @Contended("tlr"): 128 bytes of padding on each side of the group.
    ("java/lang/Thread", VmExtra { bytes: 256, refs: 0, aligned_end: true }),
];

/// Field bytes of a `java.lang.Class` instance (0 when the dump lacks the class).
pub(crate) fn class_mirror_field_bytes(parsed: &Parsed, layouts: &IdMap<Layout>, model: &SizeModel, memo: &mut IdMap<u64>) -> u64 {
    parsed
        .class_names
        .iter()
        .find(|(_, &sid)| parsed.string(sid) == Some("java/lang/Class"))
        .map(|(&cid, _)| instance_end(cid, layouts, model, memo, 0) - model.header)
        .unwrap_or(0)
}

/// A class object's shallow size: its mirror plus the class's static fields, as HotSpot stores them.
pub(crate) fn class_object_size(model: &SizeModel, mirror_field_bytes: u64, dump: &crate::formats::hprof::ClassDump) -> u64 {
    align(model.header + mirror_field_bytes + dump.static_value_bytes + dump.static_ref_count * model.reference)
}

/// Unaligned end of an instance of `class_id`: where its last field ends, as HotSpot lays it out.
pub(crate) fn instance_end(class_id: u64, layouts: &IdMap<Layout>, model: &SizeModel, memo: &mut IdMap<u64>, depth: u32) -> u64 {
    if let Some(&end) = memo.get(&class_id) {
        return end;
    }
    let Some(layout) = layouts.get(&class_id) else { return model.header };
    let base = if layout.super_id == 0 || depth > 1000 {
        model.header
    } else {
        let end = instance_end(layout.super_id, layouts, model, memo, depth + 1);
        let super_aligned = layouts.get(&layout.super_id).is_some_and(|l| l.own_extra.aligned_end);
        if super_aligned { align(end) } else { end }
    };
    let extra = layout.own_extra;
    let mut end = base + layout.own_primitive_bytes + (layout.own_refs + extra.refs) * model.reference + extra.bytes;
    if extra.aligned_end {
        end = align(end);
    }
    memo.insert(class_id, end);
    end
}

/// Sorted object ids with a bucket table over the id range: a lookup is one
/// table read plus a binary search over a few neighbouring ids, instead of a
/// cache-missing search over all of them (HotSpot ids are addresses, so they
/// spread evenly over the heap's range).
pub struct IdIndex {
    pub ids: Vec<u64>,
    min: u64,
    shift: u32,
    buckets: Vec<u32>,
}

impl IdIndex {
    pub fn new(ids: Vec<u64>) -> Self {
        let (min, max) = (ids.first().copied().unwrap_or(0), ids.last().copied().unwrap_or(0));
        let span = max - min;
        let target = (ids.len() as u64 / 4).max(1);
        let mut shift = 0;
        while (span >> shift) > target {
            shift += 1;
        }
        let nb = (span >> shift) as usize + 2;
        let mut buckets = vec![0u32; nb];
        for &id in &ids {
            buckets[((id - min) >> shift) as usize + 1] += 1;
        }
        for b in 1..nb {
            buckets[b] += buckets[b - 1];
        }
        IdIndex { ids, min, shift, buckets }
    }

    #[inline]
    pub fn lookup(&self, id: u64) -> Option<u32> {
        if id < self.min {
            return None;
        }
        let b = ((id - self.min) >> self.shift) as usize;
        if b + 1 >= self.buckets.len() {
            return None;
        }
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        self.ids[lo..hi].binary_search(&id).ok().map(|i| (lo + i) as u32)
    }
}

pub struct HprofGraph<'a> {
    pub parsed: Parsed<'a>,
    pub model: SizeModel,
    /// Sorted object ids; a node's index is its position here.
    pub index: IdIndex,
    pub kinds: Vec<Kind>,
    /// Payload offset in the file (instances, arrays) per node.
    pub offsets: Vec<u64>,
    pub lens: Vec<u32>,
    /// Histogram class per node.
    pub class_of: Vec<u32>,
    pub class_names: Vec<String>,
    /// Instance layout per histogram class (classes that have a class dump).
    pub class_layouts: Vec<Option<Layout>>,
    pub shallow: Vec<u64>,
    pub edge_start: Vec<u32>,
    pub edges: Vec<u32>,
    pub roots: Vec<(u32, u8)>,
}

impl<'a> HprofGraph<'a> {
    pub fn index_of(&self, id: u64) -> Option<u32> {
        self.index.lookup(id)
    }

    pub fn id(&self, node: u32) -> u64 {
        self.index.ids[node as usize]
    }

    pub fn len(&self) -> usize {
        self.index.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.ids.is_empty()
    }

    fn layout(&self, node: usize) -> Option<&Layout> {
        self.class_layouts.get(self.class_of[node] as usize)?.as_ref()
    }

    pub fn successors(&self, node: u32) -> &[u32] {
        let s = self.edge_start[node as usize] as usize;
        let e = self.edge_start[node as usize + 1] as usize;
        &self.edges[s..e]
    }

    pub fn class_name(&self, node: u32) -> &str {
        &self.class_names[self.class_of[node as usize] as usize]
    }

    pub fn build(mut parsed: Parsed<'a>, compressed_oops: Option<bool>) -> Result<Self, HeapError> {
        let id_size = parsed.id_size;
        let t0 = std::time::Instant::now();
        let timing = std::env::var_os("LEAKSCOPE_TIMING").is_some();
        let mut objects = std::mem::take(&mut parsed.objects);
        // Stable sort: it finds the sorted runs a dump is made of and merges them.
        objects.sort_by_key(|o| o.id);
        if timing {
            eprintln!("  sorted: {} ms", t0.elapsed().as_millis());
        }
        objects.dedup_by_key(|o| o.id);
        let n = objects.len();
        if n >= u32::MAX as usize {
            return Err(HeapError::Corrupt { offset: 0, reason: format!("{n} objects exceed this analyser's 4 billion limit") });
        }

        // Histogram classes: one per class id, plus primitive arrays by name.
        let mut table = ClassTable::default();
        let mut dumped: Vec<u64> = parsed.classes.keys().copied().collect();
        dumped.sort_unstable();
        for &cid in &dumped {
            table.by_id(cid, &parsed);
        }
        let java_lang_class = table.by_name("java.lang.Class");

        // Layouts per class (flattened through superclasses).
        let layouts = build_layouts(&parsed);
        // Heaps over ~32 GiB cannot use compressed oops; the dump's size bounds the heap's.
        let compressed = compressed_oops.unwrap_or(id_size == 8 && (parsed.data.len() as u64) < 30 << 30);
        let model = SizeModel::for_dump(id_size, compressed);
        let mut ends: IdMap<u64> = IdMap::default();
        let mirror_bytes = class_mirror_field_bytes(&parsed, &layouts, &model, &mut ends);

        // Everything the per-object loop looks up is resolved up front, so the
        // loop runs read-only on every core: histogram class and instance size
        // per dumped class, the class of each primitive array type.
        let mut instance_classes: IdMap<(u32, u64)> = IdMap::with_capacity_and_hasher(dumped.len(), Default::default());
        for &cid in &dumped {
            if layouts.contains_key(&cid) {
                let size = align(instance_end(cid, &layouts, &model, &mut ends, 0));
                instance_classes.insert(cid, (table.by_id(cid, &parsed), size));
            }
        }
        let mut primitive_classes = [u32::MAX; 12];
        for t in 4..12u8 {
            primitive_classes[t as usize] = table.by_name(primitive_array_name(t));
        }
        let sizing = Sizing {
            model,
            id_size,
            instance_classes: &instance_classes,
            array_classes: &table.ids,
            primitive_classes,
            java_lang_class,
            mirror_bytes,
            parsed: &parsed,
        };
        let mut columns = NodeColumns::zeroed(n);
        let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).clamp(1, 8);
        let chunk = n.div_ceil(threads).max(1);
        let unresolved: Vec<usize> = std::thread::scope(|scope| {
            let mut rest = columns.as_mut();
            let mut handles = Vec::new();
            for (k, part) in objects.chunks(chunk).enumerate() {
                let (mine, others) = rest.split_at(part.len());
                rest = others;
                let sizing = &sizing;
                handles.push(scope.spawn(move || sizing.fill(part, k * chunk, mine)));
            }
            handles.into_iter().flat_map(crate::join).collect()
        });
        // The rare objects whose class the dump never described get a histogram class here.
        for i in unresolved {
            let o = &objects[i];
            let (class, size) = match o.kind {
                Kind::PrimitiveArray(t) => (table.by_name(primitive_array_name(t)), model.array(value_size(t, id_size).unwrap_or(1) as u64, o.len as u64)),
                Kind::ObjectArray => (table.by_id(o.class_id, &parsed), model.array(model.reference, o.len as u64)),
                _ => (table.by_id(o.class_id, &parsed), align(model.header + o.len as u64)),
            };
            columns.class_of[i] = class;
            columns.shallow[i] = size;
        }
        let NodeColumns { ids, kinds, offsets, lens, class_of, shallow } = columns;
        drop(objects);
        if timing {
            eprintln!("  sized: {} ms", t0.elapsed().as_millis());
        }
        let mut class_layouts: Vec<Option<Layout>> = vec![None; table.names.len()];
        let mut layouts = layouts;
        for (&cid, &ci) in &table.ids {
            class_layouts[ci as usize] = layouts.remove(&cid);
        }

        let mut graph = HprofGraph {
            parsed,
            model,
            index: IdIndex::new(ids),
            kinds,
            offsets,
            lens,
            class_of,
            class_names: table.names,
            class_layouts,
            shallow,
            edge_start: Vec::new(),
            edges: Vec::new(),
            roots: Vec::new(),
        };
        if timing {
            eprintln!("  indexed: {} ms", t0.elapsed().as_millis());
        }
        graph.build_edges()?;
        if timing {
            eprintln!("  edges: {} ms", t0.elapsed().as_millis());
        }
        let mut roots: Vec<(u32, u8)> =
            graph.parsed.roots.iter().filter_map(|&(id, kind)| graph.index_of(id).map(|i| (i, kind))).collect();
        roots.sort_unstable_by_key(|r| r.0);
        roots.dedup_by_key(|r| r.0);
        graph.roots = roots;
        Ok(graph)
    }

    /// Outgoing references of every node, read from the mapped file; the
    /// nodes are split into one contiguous range per core.
    fn build_edges(&mut self) -> Result<(), HeapError> {
        let n = self.len();
        let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).clamp(1, 8);
        let chunk = n.div_ceil(threads).max(1);
        let this = &*self;
        let parts: Vec<(Vec<u32>, Vec<u32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(n);
                    scope.spawn(move || this.edges_of_range(start, end))
                })
                .collect();
            handles.into_iter().map(crate::join).collect()
        });
        let total: usize = parts.iter().map(|p| p.1.len()).sum();
        let too_many = || HeapError::Corrupt { offset: 0, reason: "more than 4 billion references exceed this analyser's limit".into() };
        if total >= u32::MAX as usize {
            return Err(too_many());
        }
        // The first range's vectors grow into the whole (a large block is remapped, not copied).
        let mut parts = parts.into_iter();
        let (mut starts, mut edges) = parts.next().unwrap_or_default();
        starts.reserve_exact(n + 1 - starts.len());
        edges.reserve_exact(total - edges.len());
        for (local_starts, local_edges) in parts {
            let base = edges.len() as u32;
            starts.extend(local_starts.iter().map(|&s| base + s));
            edges.extend_from_slice(&local_edges);
        }
        starts.push(edges.len() as u32);
        self.edge_start = starts;
        self.edges = edges;
        Ok(())
    }

    /// Edge starts (relative to this range) and targets for nodes `start..end`:
    /// an instance or array refers to its class, then to what its fields or
    /// elements hold; a class to its superclass, loader, signers, protection
    /// domain and static fields. Null and dangling references are dropped.
    fn edges_of_range(&self, start: usize, end: usize) -> (Vec<u32>, Vec<u32>) {
        let mut starts = Vec::with_capacity(end - start + 1);
        let mut edges = Vec::with_capacity((end - start) * 2);
        let id_size = self.parsed.id_size;
        let data = self.parsed.data;
        let index = &self.index;
        let push = |edges: &mut Vec<u32>, id: u64| {
            if id != 0 {
                if let Some(target) = index.lookup(id) {
                    edges.push(target);
                }
            }
        };
        // Every instance and array refers to its class: the class's node is
        // looked up once per histogram class, not once per object.
        const UNSEEN: u32 = u32::MAX - 1;
        let mut class_nodes = vec![UNSEEN; self.class_names.len()];
        let mut push_class = |edges: &mut Vec<u32>, class: u32| {
            let node = &mut class_nodes[class as usize];
            if *node == UNSEEN {
                let id = self.parsed_class_id(class);
                *node = if id == 0 { u32::MAX } else { index.lookup(id).unwrap_or(u32::MAX) };
            }
            if *node != u32::MAX {
                edges.push(*node);
            }
        };
        for i in start..end {
            // Wraps only past 4 billion references, which `build_edges` then refuses.
            starts.push(edges.len() as u32);
            let payload = data.get(self.offsets[i] as usize..).unwrap_or(&[]);
            match self.kinds[i] {
                Kind::Instance => {
                    push_class(&mut edges, self.class_of[i]);
                    if let Some(layout) = self.layout(i) {
                        let len = (self.lens[i] as usize).min(payload.len());
                        for &(off, _) in &layout.refs {
                            let off = off as usize;
                            if off + id_size <= len {
                                push(&mut edges, read_id(&payload[off..], id_size));
                            }
                        }
                    }
                }
                Kind::ObjectArray => {
                    push_class(&mut edges, self.class_of[i]);
                    let elements = payload.get(..self.lens[i] as usize * id_size).unwrap_or(&[]);
                    // One loop per id size, so the element reads are plain loads.
                    if id_size == 4 {
                        for e in elements.chunks_exact(4) {
                            push(&mut edges, u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as u64);
                        }
                    } else {
                        for e in elements.chunks_exact(8) {
                            push(&mut edges, u64::from_be_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]));
                        }
                    }
                }
                Kind::PrimitiveArray(_) => {}
                Kind::Class => {
                    if let Some(dump) = self.parsed.classes.get(&self.id(i as u32)) {
                        for id in [dump.super_id, dump.loader_id, dump.signers_id, dump.protection_domain_id] {
                            push(&mut edges, id);
                        }
                        for &(_, id) in &dump.static_refs {
                            push(&mut edges, id);
                        }
                    }
                }
            }
        }
        (starts, edges)
    }

    fn parsed_class_id(&self, class: u32) -> u64 {
        self.class_layouts.get(class as usize).and_then(|l| l.as_ref()).map(|l| l.class_id).unwrap_or(0)
    }

    /// The field of `from` (or its array index, or static field) that refers to `to`.
    pub fn field_name(&self, from: u32, to: u32) -> Option<String> {
        let i = from as usize;
        let target = self.id(to);
        let id_size = self.parsed.id_size;
        let data = self.parsed.data;
        match self.kinds[i] {
            Kind::Instance => {
                let layout = self.layout(i)?;
                let base = self.offsets[i] as usize;
                layout
                    .refs
                    .iter()
                    .find(|&&(off, _)| {
                        (off as usize + id_size) <= self.lens[i] as usize
                            && read_id(&data[base + off as usize..], id_size) == target
                    })
                    .map(|&(_, name)| self.parsed.string(name).unwrap_or("?").to_string())
            }
            Kind::ObjectArray => {
                let base = self.offsets[i] as usize;
                (0..self.lens[i] as usize)
                    .find(|&k| read_id(&data[base + k * id_size..], id_size) == target)
                    .map(|k| format!("[{k}]"))
            }
            Kind::Class => {
                let dump = self.parsed.classes.get(&self.id(from))?;
                dump.static_refs
                    .iter()
                    .find(|&&(_, v)| v == target)
                    .map(|&(name, _)| self.parsed.string(name).unwrap_or("?").to_string())
                    .or_else(|| (dump.loader_id == target).then(|| "<classloader>".to_string()))
                    .or_else(|| (dump.super_id == target).then(|| "<super>".to_string()))
            }
            Kind::PrimitiveArray(_) => None,
        }
    }

    /// For class objects, the class they represent; for others, their class.
    pub fn display_class(&self, node: u32) -> String {
        match self.kinds[node as usize] {
            Kind::Class => {
                let id = self.id(node);
                let name = self
                    .parsed
                    .class_names
                    .get(&id)
                    .and_then(|&sid| self.parsed.string(sid))
                    .map(source_name)
                    .unwrap_or_else(|| format!("0x{id:x}"));
                format!("class {name}")
            }
            _ => self.class_name(node).to_string(),
        }
    }
}

/// Per-node arrays filled from the parsed objects, one contiguous range per core.
struct NodeColumns {
    ids: Vec<u64>,
    kinds: Vec<Kind>,
    offsets: Vec<u64>,
    lens: Vec<u32>,
    class_of: Vec<u32>,
    shallow: Vec<u64>,
}

struct NodeColumnsMut<'c> {
    ids: &'c mut [u64],
    kinds: &'c mut [Kind],
    offsets: &'c mut [u64],
    lens: &'c mut [u32],
    class_of: &'c mut [u32],
    shallow: &'c mut [u64],
}

impl NodeColumns {
    /// Zeroed arrays come from fresh pages the kernel has already cleared.
    fn zeroed(n: usize) -> Self {
        NodeColumns {
            ids: vec![0; n],
            kinds: vec![Kind::Instance; n],
            offsets: vec![0; n],
            lens: vec![0; n],
            class_of: vec![0; n],
            shallow: vec![0; n],
        }
    }

    fn as_mut(&mut self) -> NodeColumnsMut<'_> {
        NodeColumnsMut {
            ids: &mut self.ids,
            kinds: &mut self.kinds,
            offsets: &mut self.offsets,
            lens: &mut self.lens,
            class_of: &mut self.class_of,
            shallow: &mut self.shallow,
        }
    }
}

impl<'c> NodeColumnsMut<'c> {
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (ids, ids_rest) = self.ids.split_at_mut(mid);
        let (kinds, kinds_rest) = self.kinds.split_at_mut(mid);
        let (offsets, offsets_rest) = self.offsets.split_at_mut(mid);
        let (lens, lens_rest) = self.lens.split_at_mut(mid);
        let (class_of, class_rest) = self.class_of.split_at_mut(mid);
        let (shallow, shallow_rest) = self.shallow.split_at_mut(mid);
        (
            NodeColumnsMut { ids, kinds, offsets, lens, class_of, shallow },
            NodeColumnsMut {
                ids: ids_rest,
                kinds: kinds_rest,
                offsets: offsets_rest,
                lens: lens_rest,
                class_of: class_rest,
                shallow: shallow_rest,
            },
        )
    }
}

/// What sizing an object needs, resolved before the per-core loop.
struct Sizing<'s, 'a> {
    model: SizeModel,
    id_size: usize,
    /// Dumped class id -> (histogram class, aligned instance size).
    instance_classes: &'s IdMap<(u32, u64)>,
    /// Class id -> histogram class (for object arrays).
    array_classes: &'s IdMap<u32>,
    /// Histogram class per primitive element type (valid types 4..=11).
    primitive_classes: [u32; 12],
    java_lang_class: u32,
    mirror_bytes: u64,
    parsed: &'s Parsed<'a>,
}

impl Sizing<'_, '_> {
    /// Fills `out` from `objects` (which start at node `first`); returns the
    /// nodes whose class is unknown, for the caller to resolve.
    fn fill(&self, objects: &[crate::formats::hprof::RawObject], first: usize, out: NodeColumnsMut) -> Vec<usize> {
        let model = &self.model;
        let mut unresolved = Vec::new();
        // Instances of a few classes dominate a heap: a small direct-mapped
        // cache saves a hash lookup for most objects.
        let mut instance_cache = [(0u64, 0u32, 0u64); 256];
        for (i, o) in objects.iter().enumerate() {
            out.ids[i] = o.id;
            out.kinds[i] = o.kind;
            out.offsets[i] = o.offset;
            out.lens[i] = o.len;
            let resolved = match o.kind {
                Kind::Instance => {
                    let slot = (o.class_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
                    match instance_cache[slot] {
                        (cid, c, size) if cid == o.class_id && cid != 0 => Some((c, size)),
                        _ => self.instance_classes.get(&o.class_id).map(|&(c, size)| {
                            instance_cache[slot] = (o.class_id, c, size);
                            (c, size)
                        }),
                    }
                }
                Kind::ObjectArray => self.array_classes.get(&o.class_id).map(|&c| (c, model.array(model.reference, o.len as u64))),
                Kind::PrimitiveArray(t) if (4..12).contains(&t) => Some((
                    self.primitive_classes[t as usize],
                    model.array(value_size(t, self.id_size).unwrap_or(1) as u64, o.len as u64),
                )),
                Kind::PrimitiveArray(_) => None,
                Kind::Class => self
                    .parsed
                    .classes
                    .get(&o.id)
                    .map(|dump| (self.java_lang_class, class_object_size(model, self.mirror_bytes, dump))),
            };
            match resolved {
                Some((class, size)) => {
                    out.class_of[i] = class;
                    out.shallow[i] = size;
                }
                None => unresolved.push(first + i),
            }
        }
        unresolved
    }
}

#[derive(Default)]
struct ClassTable {
    names: Vec<String>,
    ids: IdMap<u32>,
    by_name: HashMap<String, u32>,
}

impl ClassTable {
    fn by_id(&mut self, class_id: u64, parsed: &Parsed) -> u32 {
        if let Some(&i) = self.ids.get(&class_id) {
            return i;
        }
        let name = parsed
            .class_names
            .get(&class_id)
            .and_then(|&sid| parsed.string(sid))
            .map(source_name)
            .unwrap_or_else(|| format!("unknown class 0x{class_id:x}"));
        let i = self.names.len() as u32;
        self.ids.insert(class_id, i);
        self.by_name.entry(name.clone()).or_insert(i);
        self.names.push(name);
        i
    }

    /// The first class of this name (primitive arrays name their class only by element type).
    fn by_name(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.by_name.insert(name.to_string(), i);
        i
    }
}

pub(crate) fn build_layouts(parsed: &Parsed) -> IdMap<Layout> {
    let id_size = parsed.id_size;
    let mut layouts = IdMap::with_capacity_and_hasher(parsed.classes.len(), Default::default());
    for (&cid, _) in parsed.classes.iter() {
        let mut layout = Layout { class_id: cid, ..Layout::default() };
        if let Some(dump) = parsed.classes.get(&cid) {
            layout.super_id = dump.super_id;
            layout.own_refs = dump.fields.iter().filter(|f| f.1 == T_OBJECT).count() as u64;
            layout.own_primitive_bytes = dump
                .fields
                .iter()
                .filter(|f| f.1 != T_OBJECT)
                .map(|f| value_size(f.1, id_size).unwrap_or(0) as u64)
                .sum();
            let name = parsed.class_names.get(&cid).and_then(|&sid| parsed.string(sid));
            layout.own_extra = VM_EXTRAS.iter().find(|(n, _)| Some(*n) == name).map(|(_, e)| *e).unwrap_or_default();
        }
        let mut offset: u64 = 0;
        let mut current = cid;
        let mut guard = 0;
        // Instance data lists the class's own fields first, then each superclass's.
        while let Some(dump) = parsed.classes.get(&current) {
            for &(name, t) in &dump.fields {
                let size = value_size(t, id_size).unwrap_or(0) as u64;
                if t == T_OBJECT {
                    layout.refs.push((offset as u32, name));
                }
                offset += size;
            }
            current = dump.super_id;
            guard += 1;
            if current == 0 || guard > 10_000 {
                break;
            }
        }
        layouts.insert(cid, layout);
    }
    layouts
}

impl crate::graph::ObjectGraph for HprofGraph<'_> {
    fn len(&self) -> usize {
        HprofGraph::len(self)
    }
    fn successors(&self, node: u32) -> &[u32] {
        HprofGraph::successors(self, node)
    }
    fn shallow(&self, node: u32) -> u64 {
        self.shallow[node as usize]
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
        crate::formats::hprof::root_kind_name(kind).to_string()
    }
    fn id(&self, node: u32) -> u64 {
        HprofGraph::id(self, node)
    }
    fn index_of(&self, id: u64) -> Option<u32> {
        HprofGraph::index_of(self, id)
    }
    fn edge_name(&self, from: u32, to: u32) -> Option<String> {
        self.field_name(from, to)
    }
    fn display_class(&self, node: u32) -> String {
        HprofGraph::display_class(self, node)
    }
    fn role(&self, node: u32) -> crate::graph::Role {
        match self.kinds[node as usize] {
            Kind::Class => crate::graph::Role::Holder,
            Kind::ObjectArray | Kind::PrimitiveArray(_) => crate::graph::Role::Array(self.lens[node as usize] as u64),
            Kind::Instance => crate::graph::Role::Object,
        }
    }
    fn facts(&self) -> crate::graph::DumpFacts {
        crate::graph::DumpFacts {
            format: "hprof",
            runtime: "java",
            id_size: self.parsed.id_size as u32,
            timestamp_ms: self.parsed.timestamp_ms,
            classes: self.parsed.classes.len() as u64,
            object_header_bytes: self.model.header as u32,
            reference_bytes: self.model.reference as u32,
            compressed_oops: self.model.compressed_oops,
        }
    }
}
