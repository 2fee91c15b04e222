//! ELF core dumps: for gdb first; Leakscope reads only their headers and notes.
//!
//! A core written by Leakscope's helper carries, in a `LEAKSCOPE` note, the
//! memory-map snapshot taken while the process was stopped: the analysis is
//! that memory map's (kinds of memory, biggest mappings, a diff that says
//! which kind grew), with the thread count from the cores' own NT_PRSTATUS
//! notes. A core from elsewhere (the kernel's, gcore's) is read from its
//! program headers: one mapping per PT_LOAD, named by NT_FILE, sized by the
//! bytes it holds. The memory itself is not read: gdb is the tool for it.

use object::elf::{FileHeader64, NT_FILE, NT_PRPSINFO, NT_PRSTATUS, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use super::memmap::{self, Mapping, Snapshot};
use super::small::SmallGraph;
use crate::HeapError;

/// The name of Leakscope's note and its type: the memory-map snapshot.
const LEAKSCOPE_NOTE: &[u8] = b"LEAKSCOPE";
const NT_LEAKSCOPE_MEMMAP: u32 = 1;

/// A 64-bit little-endian ELF file of type ET_CORE (what the first 18 bytes say).
pub fn looks_like(data: &[u8]) -> bool {
    data.len() >= 18 && data.starts_with(b"\x7fELF\x02\x01") && data[16..18] == [4, 0]
}

pub fn parse(data: &[u8]) -> Result<SmallGraph, HeapError> {
    Ok(memmap::graph_as(&read(data)?, "core"))
}

/// The memory map a core describes.
pub fn read(data: &[u8]) -> Result<Snapshot, HeapError> {
    let corrupt = |reason: String| HeapError::Corrupt { offset: 0, reason };
    if !looks_like(data) {
        return Err(corrupt("not a 64-bit little-endian ELF core file".into()));
    }
    let header = FileHeader64::<LittleEndian>::parse(data).map_err(|_| HeapError::Truncated { offset: data.len() as u64, what: "the ELF header of the core" })?;
    let endian = header.endian().map_err(|e| corrupt(e.to_string()))?;
    let segments = header
        .program_headers(endian, data)
        .map_err(|_| HeapError::Truncated { offset: data.len() as u64, what: "the core's program headers" })?;
    // A core cut short loses its last segments' memory: say so rather than describe what is not there.
    let end = segments.iter().map(|s| s.p_offset(endian).saturating_add(s.p_filesz(endian))).max().unwrap_or(0);
    if end > data.len() as u64 {
        return Err(HeapError::Truncated { offset: data.len() as u64, what: "the rest of the core's memory (the file was cut short)" });
    }
    let mut ours: Option<Snapshot> = None;
    let (mut threads, mut files, mut pid, mut command) = (0u64, Vec::new(), 0u32, String::new());
    for segment in segments.iter().filter(|s| s.p_type(endian) == PT_NOTE) {
        let Some(mut notes) = segment.notes(endian, data).map_err(|e| corrupt(format!("the core's notes: {e}")))? else { continue };
        while let Some(note) = notes.next().map_err(|e| corrupt(format!("the core's notes: {e}")))? {
            let desc = note.desc();
            match (note.name(), note.n_type(endian)) {
                (b"CORE", NT_PRSTATUS) => threads += 1,
                (b"CORE", NT_PRPSINFO) if desc.len() >= 136 => {
                    pid = u32::from_le_bytes([desc[24], desc[25], desc[26], desc[27]]);
                    command = c_string(&desc[56..136]);
                }
                (b"CORE", NT_FILE) => files = mapped_files(desc),
                (LEAKSCOPE_NOTE, NT_LEAKSCOPE_MEMMAP) => ours = Some(memmap::read(desc)?),
                _ => {}
            }
        }
    }
    if threads == 0 {
        return Err(corrupt("the core has no thread (no NT_PRSTATUS note)".into()));
    }
    if let Some(mut snapshot) = ours {
        snapshot.threads = threads;
        return Ok(snapshot);
    }
    let mappings: Vec<Mapping> = segments
        .iter()
        .filter(|s| s.p_type(endian) == PT_LOAD)
        .map(|s| {
            let (start, flags, dumped) = (s.p_vaddr(endian), s.p_flags(endian), s.p_filesz(endian));
            let path = files.iter().find(|(from, _)| *from == start).map(|(_, p)| p.clone()).unwrap_or_default();
            let perms = format!(
                "{}{}{}p",
                if flags & 4 != 0 { 'r' } else { '-' },
                if flags & 2 != 0 { 'w' } else { '-' },
                if flags & 1 != 0 { 'x' } else { '-' }
            );
            let anonymous = if path.is_empty() { dumped } else { 0 };
            Mapping { start, end: start.saturating_add(s.p_memsz(endian)), perms, path, rss: dumped, pss: dumped, private_dirty: dumped, anonymous, swap: 0 }
        })
        .collect();
    if mappings.is_empty() {
        return Err(corrupt("the core holds no memory segment (PT_LOAD)".into()));
    }
    Ok(Snapshot { pid, command, runtime: "native".into(), threads, mappings, ..Snapshot::default() })
}

/// NT_FILE: (start address, path) of each file-backed mapping.
fn mapped_files(desc: &[u8]) -> Vec<(u64, String)> {
    let word = |i: usize| desc.get(i * 8..i * 8 + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let Some(count) = word(0).filter(|c| *c < 1 << 24) else { return Vec::new() };
    let count = count as usize;
    let names_at = (2 + 3 * count) * 8;
    let names = desc.get(names_at..).unwrap_or(&[]).split(|b| *b == 0).map(|n| String::from_utf8_lossy(n).into_owned());
    (0..count).filter_map(|i| word(2 + 3 * i)).zip(names).collect()
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ObjectGraph;

    /// A minimal core: header, one PT_NOTE (one NT_PRSTATUS, an NT_FILE), two PT_LOADs.
    fn sample(cut: usize) -> Vec<u8> {
        let mut notes = Vec::new();
        let note = |out: &mut Vec<u8>, kind: u32, desc: &[u8]| {
            out.extend(5u32.to_le_bytes());
            out.extend((desc.len() as u32).to_le_bytes());
            out.extend(kind.to_le_bytes());
            out.extend(b"CORE\0\0\0\0");
            out.extend(desc);
            out.resize(out.len().next_multiple_of(4), 0);
        };
        note(&mut notes, NT_PRSTATUS, &[0u8; 336]);
        let mut files = Vec::new();
        for v in [1u64, 4096, 0x400000, 0x401000, 0] {
            files.extend(v.to_le_bytes());
        }
        files.extend(b"/native-leak\0");
        note(&mut notes, NT_FILE, &files);
        let mut data = Vec::new();
        data.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        data.extend(4u16.to_le_bytes());
        data.extend(62u16.to_le_bytes());
        data.extend(1u32.to_le_bytes());
        data.extend(0u64.to_le_bytes());
        data.extend(64u64.to_le_bytes());
        data.extend(0u64.to_le_bytes());
        data.extend(0u32.to_le_bytes());
        data.extend([64, 0, 56, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        let notes_at = 64 + 3 * 56;
        let data_at = (notes_at + notes.len() as u64).next_multiple_of(4096);
        let phdr = |out: &mut Vec<u8>, kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64| {
            out.extend(kind.to_le_bytes());
            out.extend(flags.to_le_bytes());
            let align = if kind == PT_NOTE { 4 } else { 4096 };
            for v in [offset, vaddr, 0, filesz, memsz, align] {
                out.extend(v.to_le_bytes());
            }
        };
        phdr(&mut data, PT_NOTE, 0, notes_at, 0, notes.len() as u64, 0);
        phdr(&mut data, PT_LOAD, 5, data_at, 0x400000, 4096, 4096);
        phdr(&mut data, PT_LOAD, 6, data_at + 4096, 0x1000000, 8192, 1 << 20);
        data.extend(&notes);
        data.resize((data_at + 3 * 4096) as usize, 0x5a);
        data.truncate(data.len() - cut);
        data
    }

    #[test]
    fn reads_a_core_without_our_note_from_its_headers() {
        let data = sample(0);
        assert!(looks_like(&data));
        let snapshot = read(&data).unwrap();
        assert_eq!(snapshot.threads, 1);
        assert_eq!(snapshot.mappings.len(), 2);
        assert_eq!((snapshot.mappings[0].path.as_str(), snapshot.mappings[0].perms.as_str()), ("/native-leak", "r-xp"));
        assert_eq!((snapshot.mappings[1].rss, snapshot.mappings[1].end), (8192, 0x1000000 + (1 << 20)));
        assert_eq!(parse(&data).unwrap().len(), 1 + 2 + 1);
    }

    #[test]
    fn a_cut_or_foreign_core_is_refused() {
        assert!(matches!(read(&sample(100)), Err(HeapError::Truncated { .. })));
        assert!(matches!(read(&sample(0)[..100]), Err(HeapError::Truncated { .. })));
        assert!(read(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0").is_err());
    }
}
