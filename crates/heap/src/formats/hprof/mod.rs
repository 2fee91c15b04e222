//! HPROF 1.0.1/1.0.2 parser, written by hand: it must index tens of millions
//! of records from a memory-mapped file without copying them, and no crate
//! does that. One pass collects strings, classes, roots and an index entry
//! (id, kind, class, payload offset) per object; object payloads stay in the
//! file and are read again when edges are built.

pub mod graph;

use crate::reader::Cursor;
use crate::{HeapError, IdMap};

pub const TAG_UTF8: u8 = 0x01;
pub const TAG_LOAD_CLASS: u8 = 0x02;
pub const TAG_HEAP_DUMP: u8 = 0x0C;
pub const TAG_HEAP_DUMP_SEGMENT: u8 = 0x1C;

/// HPROF basic types.
pub const T_OBJECT: u8 = 2;

/// Size in the dump of a value of this basic type (`None` for unknown codes).
pub fn value_size(t: u8, id_size: usize) -> Option<usize> {
    Some(match t {
        T_OBJECT => id_size,
        4 | 8 => 1,      // boolean, byte
        5 | 9 => 2,      // char, short
        6 | 10 => 4,     // float, int
        7 | 11 => 8,     // double, long
        _ => return None,
    })
}

pub fn primitive_array_name(t: u8) -> &'static str {
    match t {
        4 => "boolean[]",
        5 => "char[]",
        6 => "float[]",
        7 => "double[]",
        8 => "byte[]",
        9 => "short[]",
        10 => "int[]",
        11 => "long[]",
        _ => "unknown[]",
    }
}

pub fn root_kind_name(kind: u8) -> &'static str {
    match kind {
        0xFF => "unknown root",
        0x01 => "JNI global",
        0x02 => "JNI local",
        0x03 => "Java frame",
        0x04 => "native stack",
        0x05 => "sticky class",
        0x06 => "thread block",
        0x07 => "monitor used",
        0x08 => "thread object",
        _ => "root",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Instance,
    ObjectArray,
    /// Element basic type.
    PrimitiveArray(u8),
    Class,
}

/// One object as indexed by the first pass.
#[derive(Clone, Copy, Debug)]
pub struct RawObject {
    pub id: u64,
    /// Start of the payload in the file: instance field bytes or array elements.
    pub offset: u64,
    /// Class id of instances and object arrays; 0 for primitive arrays and classes.
    pub class_id: u64,
    /// Payload bytes (instances) or element count (arrays).
    pub len: u32,
    pub kind: Kind,
}

#[derive(Clone, Debug, Default)]
pub struct ClassDump {
    pub super_id: u64,
    pub loader_id: u64,
    pub signers_id: u64,
    pub protection_domain_id: u64,
    /// This class's own instance fields in dump order: (name string id, basic type).
    pub fields: Vec<(u64, u8)>,
    /// Static fields holding references: (name string id, value).
    pub static_refs: Vec<(u64, u64)>,
    /// Bytes of static field values, references counted at the dump's id size.
    pub static_value_bytes: u64,
    pub static_ref_count: u64,
}

pub struct Parsed<'a> {
    pub data: &'a [u8],
    pub id_size: usize,
    pub timestamp_ms: i64,
    /// String id → (offset, length) of its UTF-8 bytes in the file.
    pub strings: IdMap<(usize, usize)>,
    /// Class object id → name string id (LOAD CLASS).
    pub class_names: IdMap<u64>,
    pub classes: IdMap<ClassDump>,
    pub objects: Vec<RawObject>,
    pub roots: Vec<(u64, u8)>,
}

impl Parsed<'_> {
    pub fn string(&self, id: u64) -> Option<&str> {
        let &(off, len) = self.strings.get(&id)?;
        std::str::from_utf8(self.data.get(off..off + len)?).ok()
    }
}

/// Reads the header: `JAVA PROFILE 1.0.x\0`, id size, timestamp.
fn header(data: &[u8]) -> Result<(usize, i64, usize), HeapError> {
    let nul = data.iter().take(64).position(|&b| b == 0).ok_or(HeapError::NotHprof)?;
    let magic = &data[..nul];
    if !magic.starts_with(b"JAVA PROFILE 1.0.") {
        return Err(HeapError::NotHprof);
    }
    let mut c = Cursor::new(data, nul + 1, 8);
    let id_size = c.u32("identifier size")? as usize;
    if id_size != 4 && id_size != 8 {
        return Err(HeapError::Corrupt { offset: (nul + 1) as u64, reason: format!("identifier size {id_size} (expected 4 or 8)") });
    }
    let timestamp_ms = c.u64("timestamp")? as i64;
    Ok((id_size, timestamp_ms, c.pos()))
}

/// Roots, class dumps and objects found in heap dump segments.
#[derive(Default)]
struct HeapPart {
    classes: IdMap<ClassDump>,
    roots: Vec<(u64, u8)>,
}

/// Reports how far parsing got, as bytes of the file read so far.
pub type ParseProgress<'p> = &'p (dyn Fn(usize) + Sync);

/// Parses the whole dump and indexes every object. Heap dump segments (HotSpot
/// writes them about 1 MiB each) are split into one contiguous group per
/// core and parsed side by side.
pub fn parse<'a>(data: &'a [u8], progress: ParseProgress) -> Result<Parsed<'a>, HeapError> {
    let (mut parsed, segments) = scan(data)?;
    let id_size = parsed.id_size;
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).clamp(1, 8);
    let total: usize = segments.iter().map(|s| s.1).sum();
    let mut groups: Vec<&[(usize, usize)]> = Vec::new();
    let (mut from, mut bytes) = (0, 0);
    for (i, seg) in segments.iter().enumerate() {
        bytes += seg.1;
        if bytes >= total.div_ceil(threads) * (groups.len() + 1) || i + 1 == segments.len() {
            groups.push(&segments[from..=i]);
            from = i + 1;
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(data.len() - total);
    let results: Vec<Result<(HeapPart, Vec<RawObject>), HeapError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .map(|group| {
                let done = &done;
                scope.spawn(move || {
                    let bytes: usize = group.iter().map(|s| s.1).sum();
                    let mut objects = Vec::with_capacity(bytes / 40);
                    let mut part = HeapPart::default();
                    for &(start, len) in group.iter() {
                        heap_segment(&mut part, id_size, &data[start..start + len], start, &mut |o| objects.push(o))?;
                        progress(done.fetch_add(len, std::sync::atomic::Ordering::Relaxed) + len);
                    }
                    Ok((part, objects))
                })
            })
            .collect();
        handles.into_iter().map(crate::join).collect()
    });
    // Groups are in file order, so the first error is the earliest one.
    let mut objects: Vec<RawObject> = Vec::new();
    for result in results {
        let (part, found) = result?;
        if objects.is_empty() {
            // The first group's vector grows in place (a large block is remapped, not copied).
            objects = found;
        } else {
            objects.extend_from_slice(&found);
        }
        parsed.roots.extend(part.roots);
        parsed.classes.extend(part.classes);
    }
    parsed.objects = objects;
    Ok(parsed)
}

/// Parses, handing every object to `sink` instead of keeping an index
/// (the histogram-only pass counts them and keeps nothing).
pub fn parse_with<'a, F: FnMut(RawObject)>(data: &'a [u8], sink: &mut F) -> Result<Parsed<'a>, HeapError> {
    let (mut parsed, segments) = scan(data)?;
    let mut part = HeapPart::default();
    for (start, len) in segments {
        heap_segment(&mut part, parsed.id_size, &data[start..start + len], start, sink)?;
    }
    parsed.roots = part.roots;
    parsed.classes = part.classes;
    Ok(parsed)
}

/// The top-level records: strings and class names are kept, heap dump
/// segments are returned as (body offset, length) for a second pass.
fn scan(data: &[u8]) -> Result<(Parsed<'_>, Vec<(usize, usize)>), HeapError> {
    let (id_size, timestamp_ms, start) = header(data)?;
    let mut parsed = Parsed {
        data,
        id_size,
        timestamp_ms,
        strings: IdMap::default(),
        class_names: IdMap::default(),
        classes: IdMap::default(),
        objects: Vec::new(),
        roots: Vec::new(),
    };
    let mut segments = Vec::new();
    let mut c = Cursor::new(data, start, id_size);
    while !c.at_end() {
        let record_start = c.pos();
        let tag = c.u8("record tag")?;
        c.u32("record time")?;
        let len = c.u32("record length")? as usize;
        if len > c.remaining() {
            return Err(HeapError::Truncated { offset: record_start as u64, what: "record body (the dump is cut short)" });
        }
        let body_start = c.pos();
        match tag {
            TAG_UTF8 => {
                if len < id_size {
                    return Err(HeapError::Corrupt { offset: record_start as u64, reason: "string record shorter than an id".into() });
                }
                let id = c.id("string id")?;
                parsed.strings.insert(id, (c.pos(), len - id_size));
            }
            TAG_LOAD_CLASS => {
                c.u32("class serial")?;
                let class_id = c.id("class id")?;
                c.u32("stack serial")?;
                let name_id = c.id("class name id")?;
                parsed.class_names.insert(class_id, name_id);
            }
            TAG_HEAP_DUMP | TAG_HEAP_DUMP_SEGMENT => segments.push((body_start, len)),
            _ => {}
        }
        c = Cursor::new(data, body_start + len, id_size);
    }
    Ok((parsed, segments))
}

fn heap_segment<F: FnMut(RawObject)>(parsed: &mut HeapPart, id_size: usize, body: &[u8], base: usize, sink: &mut F) -> Result<(), HeapError> {
    let mut c = Cursor::new(body, 0, id_size);
    let at = |c: &Cursor| (base + c.pos()) as u64;
    while !c.at_end() {
        let sub_start = at(&c);
        let sub = c.u8("sub-record tag")?;
        match sub {
            0xFF | 0x05 | 0x07 => {
                let id = c.id("root id")?;
                parsed.roots.push((id, sub));
            }
            0x01 => {
                let id = c.id("root id")?;
                c.id("JNI global ref id")?;
                parsed.roots.push((id, sub));
            }
            0x02 | 0x03 => {
                let id = c.id("root id")?;
                c.u32("thread serial")?;
                c.u32("frame number")?;
                parsed.roots.push((id, sub));
            }
            0x04 | 0x06 => {
                let id = c.id("root id")?;
                c.u32("thread serial")?;
                parsed.roots.push((id, sub));
            }
            0x08 => {
                let id = c.id("root id")?;
                c.u32("thread serial")?;
                c.u32("stack serial")?;
                parsed.roots.push((id, sub));
            }
            0x20 => sink(class_dump(parsed, id_size, &mut c, base)?),
            0x21 => {
                let id = c.id("instance id")?;
                c.u32("stack serial")?;
                let class_id = c.id("instance class id")?;
                let n = c.u32("instance data length")?;
                let offset = at(&c);
                c.skip(n as usize, "instance data")?;
                sink(RawObject { id, offset, class_id, len: n, kind: Kind::Instance });
            }
            0x22 => {
                let id = c.id("array id")?;
                c.u32("stack serial")?;
                let n = c.u32("array length")?;
                let class_id = c.id("array class id")?;
                let offset = at(&c);
                let bytes = (n as usize).checked_mul(id_size).ok_or_else(|| HeapError::Corrupt {
                    offset: sub_start,
                    reason: format!("object array length {n} overflows"),
                })?;
                c.skip(bytes, "object array elements")?;
                sink(RawObject { id, offset, class_id, len: n, kind: Kind::ObjectArray });
            }
            0x23 => {
                let id = c.id("array id")?;
                c.u32("stack serial")?;
                let n = c.u32("array length")?;
                let t = c.u8("element type")?;
                let size = match value_size(t, id_size) {
                    Some(s) if t != T_OBJECT => s,
                    _ => return Err(HeapError::Corrupt { offset: sub_start, reason: format!("primitive array of unknown type {t}") }),
                };
                let offset = at(&c);
                let bytes = (n as usize).checked_mul(size).ok_or_else(|| HeapError::Corrupt {
                    offset: sub_start,
                    reason: format!("primitive array length {n} overflows"),
                })?;
                c.skip(bytes, "primitive array elements")?;
                sink(RawObject { id, offset, class_id: 0, len: n, kind: Kind::PrimitiveArray(t) });
            }
            other => {
                return Err(HeapError::Corrupt { offset: sub_start, reason: format!("unknown heap dump sub-record tag 0x{other:02x}") });
            }
        }
    }
    Ok(())
}

fn class_dump(parsed: &mut HeapPart, id_size: usize, c: &mut Cursor, base: usize) -> Result<RawObject, HeapError> {
    let start = (base + c.pos()) as u64;
    let class_id = c.id("class id")?;
    c.u32("stack serial")?;
    let mut dump = ClassDump {
        super_id: c.id("super class id")?,
        loader_id: c.id("class loader id")?,
        signers_id: c.id("signers id")?,
        protection_domain_id: c.id("protection domain id")?,
        ..Default::default()
    };
    c.id("reserved")?;
    c.id("reserved")?;
    c.u32("instance size")?;
    let constants = c.u16("constant pool size")?;
    for _ in 0..constants {
        c.u16("constant pool index")?;
        let t = c.u8("constant type")?;
        let size = value_size(t, id_size)
            .ok_or_else(|| HeapError::Corrupt { offset: start, reason: format!("constant of unknown type {t}") })?;
        c.skip(size, "constant value")?;
    }
    let statics = c.u16("static field count")?;
    for _ in 0..statics {
        let name = c.id("static field name")?;
        let t = c.u8("static field type")?;
        let size = value_size(t, id_size)
            .ok_or_else(|| HeapError::Corrupt { offset: start, reason: format!("static field of unknown type {t}") })?;
        if t == T_OBJECT {
            let value = c.id("static field value")?;
            dump.static_ref_count += 1;
            if value != 0 {
                dump.static_refs.push((name, value));
            }
        } else {
            c.skip(size, "static field value")?;
            dump.static_value_bytes += size as u64;
        }
    }
    let fields = c.u16("instance field count")?;
    dump.fields.reserve(fields as usize);
    for _ in 0..fields {
        let name = c.id("field name")?;
        let t = c.u8("field type")?;
        if value_size(t, id_size).is_none() {
            return Err(HeapError::Corrupt { offset: start, reason: format!("instance field of unknown type {t}") });
        }
        dump.fields.push((name, t));
    }
    parsed.classes.insert(class_id, dump);
    Ok(RawObject { id: class_id, offset: start, class_id: 0, len: 0, kind: Kind::Class })
}
