//! `core PID`: an ELF core file of a running process, for gdb, to stdout.
//!
//! Written by hand because nothing else fits: gcore needs gdb (and Python) in
//! the container, and the kernel writes cores only of dying processes. Every
//! thread is stopped with PTRACE_SEIZE + PTRACE_INTERRUPT (no signal the
//! program sees) only while its memory is copied, then let go.
//!
//! Layout (as the kernel writes it, `fs/binfmt_elf.c`): the ELF header, one
//! PT_NOTE and one PT_LOAD per mapping, the notes (per thread NT_PRSTATUS with
//! its registers and NT_FPREGSET; NT_PRPSINFO, NT_AUXV, NT_FILE naming the
//! mapped files so gdb finds the executable and libraries), then the memory,
//! page-aligned. Which mappings hold their bytes follows the process's
//! `coredump_filter` as the kernel reads it. Every size is known before the
//! first byte is written, so the file streams out without a seek. A
//! `LEAKSCOPE` note carries the memory-map snapshot taken while stopped, so
//! the server analyses a core like a memory map without reading its memory.
//!
//! x86_64 only, as the helper is.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use crate::ptrace::{self, refused, seize_and_interrupt};

const PAGE: u64 = 4096;
const NT_PRSTATUS: u32 = 1;
const NT_FPREGSET: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
/// Our own note (name `LEAKSCOPE`): the memory-map snapshot, in `memmap.rs`'s format.
pub const NT_LEAKSCOPE_MEMMAP: u32 = 1;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// The kernel's default `coredump_filter`: anonymous private and shared
/// memory, ELF headers, private huge pages.
const DEFAULT_FILTER: u32 = 0x33;
/// More threads than this appearing while we stop them: a thread storm we do not chase.
const MAX_ROUNDS: usize = 50;

/// `core PID [DIR MARKER]`: writes the core to stdout, or to `DIR/core` when
/// DIR is a folder the server shares with us (it put MARKER there, holding its
/// own name) with room for it — local disk is several times faster than the
/// engine's stream, and the process is stopped while the core is written.
/// Says on stderr how many bytes come (`leakscope: bytes N`, before the
/// first), where (`leakscope: file core`) and how long the process was
/// stopped (`leakscope: paused_ms N`).
pub fn core(pid: i32, shared: Option<(&str, &str)>) -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("core dumps are written for x86_64 processes only".into());
    }
    let filter = std::fs::read_to_string(format!("/proc/{pid}/coredump_filter"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(DEFAULT_FILTER);
    // The pause counts from the first thread stopped.
    let stopped_at = Instant::now();
    let threads = Threads::stop_all(pid)?;
    // Everything below reads a process that cannot change under us.
    let snapshot = crate::native::snapshot(pid)?;
    let mappings = mappings(&snapshot);
    let mem = Memory(pid);
    let loads: Vec<Load> = mappings
        .iter()
        .filter(|m| m.path != "[vsyscall]")
        .map(|m| Load { start: m.start, end: m.end, flags: m.flags(), dumped: dumped_bytes(m, filter, &mem) })
        .collect();
    let notes = notes(pid, &threads, &mappings, &snapshot)?;
    let phnum = 1 + loads.len();
    if phnum >= 0xffff {
        return Err(format!("process {pid} has {} mappings, more than an ELF core without section headers can name", loads.len()));
    }
    let notes_at = 64 + 56 * phnum as u64;
    let data_at = (notes_at + notes.len() as u64).next_multiple_of(PAGE);
    let total = data_at + loads.iter().map(|l| l.dumped).sum::<u64>();
    eprintln!("leakscope: bytes {total}");

    let sink: Box<dyn Write> = match shared.and_then(|(dir, marker)| shared_file(dir, marker, total)) {
        Some(file) => {
            eprintln!("leakscope: file core");
            Box::new(file)
        }
        None => {
            // A bigger pipe means fewer wake-ups of whoever reads it (the engine's stream), while the process is stopped.
            // SAFETY: F_SETPIPE_SZ on our stdout; fails harmlessly when it is not a pipe.
            unsafe { libc::fcntl(1, libc::F_SETPIPE_SZ, 1 << 20) };
            Box::new(std::io::stdout().lock())
        }
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let mut head = elf_header(phnum as u16);
    head.extend(program_header(PT_NOTE, 0, notes_at, 0, notes.len() as u64, 0, 0));
    let mut offset = data_at;
    for load in &loads {
        head.extend(program_header(PT_LOAD, load.flags, offset, load.start, load.dumped, load.end - load.start, PAGE));
        offset += load.dumped;
    }
    head.extend(&notes);
    head.resize(data_at as usize, 0);
    let written = (|| -> std::io::Result<u64> {
        out.write_all(&head)?;
        let mut unreadable = 0;
        for load in loads.iter().filter(|l| l.dumped > 0) {
            unreadable += copy_memory(&mem, load.start, load.dumped, &mut out)?;
        }
        out.flush()?;
        Ok(unreadable)
    })();
    // The process was stopped while its memory was copied; it runs on now.
    let alive = process_alive(pid);
    drop(threads);
    let paused = stopped_at.elapsed();
    eprintln!("leakscope: paused_ms {}", paused.as_millis());
    if !alive {
        return Err(format!("process {pid} exited (or was killed) during the core dump; the core is incomplete and was not kept"));
    }
    let unreadable = written.map_err(|e| format!("writing the core: {e}"))?;
    if unreadable > 0 {
        eprintln!("leakscope: unreadable_pages {unreadable}");
    }
    Ok(())
}

/// `DIR/core`, new, when DIR holds the server's MARKER (so it is the server's
/// folder, not an empty one the engine made up) and has room for `bytes`.
fn shared_file(dir: &str, marker: &str, bytes: u64) -> Option<std::fs::File> {
    if std::fs::read_to_string(format!("{dir}/{marker}")).ok()?.trim() != marker {
        return None;
    }
    let path = std::ffi::CString::new(dir).ok()?;
    // SAFETY: statvfs fills the struct for a NUL-terminated path.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut fs) } != 0 || (fs.f_bavail as u64).saturating_mul(fs.f_frsize as u64) < bytes.saturating_add(256 << 20) {
        return None;
    }
    // The server made the file (its own, writable but not readable by others:
    // we are root without CAP_DAC_OVERRIDE); nothing is created here.
    std::fs::OpenOptions::new().write(true).truncate(true).open(format!("{dir}/core")).ok()
}

/// Every thread of the process, stopped; let go (with any signal that
/// arrived meanwhile) when dropped, whatever happened in between.
struct Threads {
    /// (thread id, signal to deliver at detach)
    held: Vec<(i32, i32)>,
    registers: Vec<(libc::user_regs_struct, Option<libc::user_fpregs_struct>)>,
}

impl Threads {
    /// Stops every thread; threads started meanwhile are stopped in the next round.
    fn stop_all(pid: i32) -> Result<Threads, String> {
        let mut threads = Threads { held: Vec::new(), registers: Vec::new() };
        for _ in 0..MAX_ROUNDS {
            let tids = thread_ids(pid)?;
            let new: Vec<i32> = tids.into_iter().filter(|t| !threads.held.iter().any(|(h, _)| h == t)).collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                match seize_and_interrupt(tid) {
                    Ok(()) => {}
                    // The thread ended between listing and seizing.
                    Err(libc::ESRCH) if tid != pid => continue,
                    Err(e) => return Err(refused(pid, "attach", e)),
                }
                match ptrace::wait_stop(tid, Duration::from_secs(5)) {
                    Ok((signal, interrupted)) => threads.held.push((tid, if interrupted { 0 } else { signal })),
                    Err(_) if tid != pid => ptrace::detach(tid, 0),
                    Err(e) => {
                        ptrace::detach(tid, 0);
                        return Err(format!("stopping process {pid}: {e}"));
                    }
                }
            }
        }
        // The main thread first: gdb takes the first thread of a core for the current one.
        threads.held.sort_by_key(|(tid, _)| (*tid != pid, *tid));
        for &(tid, _) in &threads.held {
            threads.registers.push((ptrace::regs(tid)?, ptrace::fpregs(tid).ok()));
        }
        Ok(threads)
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        for &(tid, signal) in &self.held {
            ptrace::detach(tid, signal);
        }
    }
}

fn thread_ids(pid: i32) -> Result<Vec<i32>, String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("process {pid} has exited"),
        _ => format!("cannot list the threads of process {pid}: {e}"),
    })?;
    Ok(dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
}

fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')))
        .unwrap_or(false)
}

/// One mapping of smaps, with what deciding its dump needs.
#[derive(Debug, Default, PartialEq)]
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
    path: String,
    anonymous_kib: u64,
    vm_flags: Vec<String>,
}

impl Mapping {
    fn flags(&self) -> u32 {
        let p = self.perms.as_bytes();
        (if p.first() == Some(&b'r') { 4 } else { 0 }) | (if p.get(1) == Some(&b'w') { 2 } else { 0 }) | (if p.get(2) == Some(&b'x') { 1 } else { 0 })
    }
    fn has(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

/// The mappings of the smaps section of a memory-map snapshot.
fn mappings(snapshot: &str) -> Vec<Mapping> {
    let smaps = snapshot.split_once("\n== smaps\n").map(|(_, s)| s).unwrap_or("");
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        if line == "== end" {
            break;
        }
        let mut fields = line.split_whitespace();
        let range = fields.next().and_then(|r| r.split_once('-')).and_then(|(a, b)| Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?)));
        if let (Some((start, end)), Some(perms)) = (range, fields.next().filter(|p| p.len() == 4)) {
            let offset = fields.next().and_then(|o| u64::from_str_radix(o, 16).ok()).unwrap_or(0);
            let path = fields.skip(2).collect::<Vec<_>>().join(" ");
            out.push(Mapping { start, end, perms: perms.to_string(), offset, path, ..Mapping::default() });
        } else if let (Some(m), Some((key, value))) = (out.last_mut(), line.split_once(':')) {
            match key {
                "Anonymous" => m.anonymous_kib = value.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0),
                "VmFlags" => m.vm_flags = value.split_whitespace().map(str::to_string).collect(),
                _ => {}
            }
        }
    }
    out
}

/// How many bytes of a mapping the core holds, as the kernel decides
/// (`vma_dump_size`): none for what must not or cannot be read, all of it
/// for memory the filter names, the first page of a mapped ELF file for its build id.
fn dumped_bytes(m: &Mapping, filter: u32, mem: &impl ReadAt) -> u64 {
    let size = m.end - m.start;
    if m.path == "[vdso]" {
        return size;
    }
    // VM_DONTDUMP, VM_IO, VM_PFNMAP; unreadable memory has nothing to copy.
    if m.has("dd") || m.has("io") || m.has("pf") || !m.perms.starts_with('r') {
        return 0;
    }
    let shared = m.perms.as_bytes().get(3) == Some(&b's');
    let anonymous = m.path.is_empty() || m.path.starts_with('[') || m.path == "/dev/zero" || m.path.starts_with("/SYSV");
    let bit = |n: u32| filter & (1 << n) != 0;
    let whole = if m.has("ht") {
        bit(if shared { 6 } else { 5 })
    } else if shared {
        bit(if anonymous { 1 } else { 3 })
    } else if anonymous {
        bit(0)
    } else {
        // A file mapping written to (copy-on-write pages) counts as anonymous memory.
        (m.anonymous_kib > 0 && bit(0)) || bit(2)
    };
    if whole {
        return size;
    }
    let mut magic = [0u8; 4];
    if bit(4) && !anonymous && m.offset == 0 && mem.read_at(&mut magic, m.start) == Some(4) && magic == *b"\x7fELF" {
        return PAGE;
    }
    0
}

/// Reading another process's memory at an address: how many bytes came.
trait ReadAt {
    fn read_at(&self, buffer: &mut [u8], address: u64) -> Option<usize>;
}

/// The stopped process's memory, through process_vm_readv: it needs only the
/// ptrace right, where /proc/<pid>/mem is also guarded by file permissions
/// (its owner is the process's user, and the helper holds no CAP_DAC_OVERRIDE).
struct Memory(i32);

impl ReadAt for Memory {
    fn read_at(&self, buffer: &mut [u8], address: u64) -> Option<usize> {
        let local = libc::iovec { iov_base: buffer.as_mut_ptr() as *mut libc::c_void, iov_len: buffer.len() };
        let remote = libc::iovec { iov_base: address as *mut libc::c_void, iov_len: buffer.len() };
        // SAFETY: process_vm_readv writes at most `buffer.len()` bytes into our buffer; the kernel checks the target range.
        let n = unsafe { libc::process_vm_readv(self.0, &local, 1, &remote, 1, 0) };
        usize::try_from(n).ok()
    }
}

struct Load {
    start: u64,
    end: u64,
    flags: u32,
    dumped: u64,
}

/// Copies `length` bytes of the process's memory from `start`; pages that
/// cannot be read are written as zeros (as the kernel leaves holes). Returns their number.
fn copy_memory(mem: &Memory, start: u64, length: u64, out: &mut impl Write) -> std::io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut buffer = vec![0u8; CHUNK as usize];
    let mut unreadable = 0;
    let mut at = start;
    let end = start + length;
    while at < end {
        let n = (end - at).min(CHUNK) as usize;
        let chunk = &mut buffer[..n];
        if mem.read_at(chunk, at) != Some(n) {
            // A killed process cannot be read at all: stop at once rather than write zeros.
            if !process_alive(mem.0) {
                return Err(std::io::Error::other("the process is gone"));
            }
            // Page by page, to keep what can be read.
            for page in chunk.chunks_mut(PAGE as usize).enumerate() {
                let (i, bytes) = page;
                let address = at + i as u64 * PAGE;
                if mem.read_at(bytes, address) != Some(bytes.len()) {
                    bytes.fill(0);
                    unreadable += 1;
                }
            }
        }
        out.write_all(chunk)?;
        at += n as u64;
    }
    Ok(unreadable)
}

fn elf_header(phnum: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend(b"\x7fELF");
    h.extend([2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V ABI
    h.extend([0u8; 8]);
    h.extend(4u16.to_le_bytes()); // ET_CORE
    h.extend(62u16.to_le_bytes()); // EM_X86_64
    h.extend(1u32.to_le_bytes());
    h.extend(0u64.to_le_bytes()); // entry
    h.extend(64u64.to_le_bytes()); // program headers right after this one
    h.extend(0u64.to_le_bytes()); // no section headers
    h.extend(0u32.to_le_bytes());
    h.extend(64u16.to_le_bytes());
    h.extend(56u16.to_le_bytes());
    h.extend(phnum.to_le_bytes());
    h.extend([0u8; 6]); // section header size, count, names index
    h
}

fn program_header(kind: u32, flags: u32, offset: u64, address: u64, file_size: u64, memory_size: u64, align: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(56);
    p.extend(kind.to_le_bytes());
    p.extend(flags.to_le_bytes());
    for value in [offset, address, 0, file_size, memory_size, align] {
        p.extend(value.to_le_bytes());
    }
    p
}

fn note(out: &mut Vec<u8>, name: &str, kind: u32, desc: &[u8]) {
    out.extend((name.len() as u32 + 1).to_le_bytes());
    out.extend((desc.len() as u32).to_le_bytes());
    out.extend(kind.to_le_bytes());
    out.extend(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Fields of /proc/<pid>/stat after the command: (state, ppid, pgrp, session, flags, nice).
fn stat(pid: i32) -> (u8, i32, i32, i32, u64, i64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = text.rsplit_once(") ").map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| rest.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let state = rest.first().and_then(|s| s.bytes().next()).unwrap_or(b'S');
    (state, field(1) as i32, field(2) as i32, field(3) as i32, field(6) as u64, field(16))
}

fn as_bytes<T>(value: &T) -> &[u8] {
    // SAFETY: plain-old-data register structs from libc, read as their bytes.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// `struct elf_prstatus` (336 bytes on x86_64) for one thread.
fn prstatus(tid: i32, process: (i32, i32, i32), regs: &libc::user_regs_struct, fp_valid: bool) -> Vec<u8> {
    let (ppid, pgrp, sid) = process;
    let mut s = vec![0u8; 32]; // siginfo, cursig, pending and held signals: none for a live process
    for value in [tid, ppid, pgrp, sid] {
        s.extend(value.to_le_bytes());
    }
    s.extend([0u8; 64]); // user, system and children's times
    s.extend(as_bytes(regs));
    s.extend((fp_valid as i32).to_le_bytes());
    s.resize(336, 0);
    s
}

/// `struct elf_prpsinfo` (136 bytes on x86_64).
fn prpsinfo(pid: i32) -> Vec<u8> {
    let (state, ppid, pgrp, sid, flags, nice) = stat(pid);
    let (uid, gid) = crate::procfs::ids(pid).unwrap_or((0, 0));
    let mut s = vec![state, state, (state == b'Z') as u8, nice as i8 as u8, 0, 0, 0, 0];
    s.extend(flags.to_le_bytes());
    s.extend(uid.to_le_bytes());
    s.extend(gid.to_le_bytes());
    for value in [pid, ppid, pgrp, sid] {
        s.extend(value.to_le_bytes());
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let mut fname = comm.trim_end().as_bytes().to_vec();
    fname.resize(16, 0);
    fname[15] = 0;
    s.extend(fname);
    let mut args = crate::procfs::cmdline(pid).unwrap_or_default().join(" ").into_bytes();
    args.resize(80, 0);
    args[79] = 0;
    s.extend(args);
    s
}

/// NT_FILE: which file each file-backed mapping shows, and from which page of it.
fn mapped_files(mappings: &[Mapping]) -> Vec<u8> {
    let files: Vec<&Mapping> = mappings.iter().filter(|m| m.path.starts_with('/')).collect();
    let mut d = Vec::new();
    d.extend((files.len() as u64).to_le_bytes());
    d.extend(PAGE.to_le_bytes());
    for m in &files {
        for value in [m.start, m.end, m.offset / PAGE] {
            d.extend(value.to_le_bytes());
        }
    }
    for m in &files {
        d.extend(m.path.as_bytes());
        d.push(0);
    }
    d
}

fn notes(pid: i32, threads: &Threads, mappings: &[Mapping], snapshot: &str) -> Result<Vec<u8>, String> {
    let (_, ppid, pgrp, sid, _, _) = stat(pid);
    // /proc/<pid>/auxv is readable by the process's own user only; the stack holds the same.
    let auxv = std::fs::read(format!("/proc/{pid}/auxv"))
        .ok()
        .or_else(|| auxv_from_stack(pid, &Memory(pid)))
        .ok_or_else(|| format!("cannot read the auxiliary vector of process {pid} (from /proc/{pid}/auxv or its stack)"))?;
    let mut notes = Vec::new();
    for (i, (&(tid, _), (regs, fpregs))) in threads.held.iter().zip(&threads.registers).enumerate() {
        // Floating-point registers follow the NT_PRSTATUS of their thread.
        note(&mut notes, "CORE", NT_PRSTATUS, &prstatus(tid, (ppid, pgrp, sid), regs, fpregs.is_some()));
        if let Some(fpregs) = fpregs {
            note(&mut notes, "CORE", NT_FPREGSET, as_bytes(fpregs));
        }
        if i == 0 {
            note(&mut notes, "CORE", NT_PRPSINFO, &prpsinfo(pid));
            note(&mut notes, "CORE", NT_AUXV, &auxv);
            note(&mut notes, "CORE", NT_FILE, &mapped_files(mappings));
            note(&mut notes, "LEAKSCOPE", NT_LEAKSCOPE_MEMMAP, snapshot.as_bytes());
        }
    }
    Ok(notes)
}

/// The auxiliary vector where the kernel put it: on the initial stack after
/// argc, argv and the environment pointers (from `startstack` in /proc/<pid>/stat).
fn auxv_from_stack(pid: i32, mem: &impl ReadAt) -> Option<Vec<u8>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(") ")?;
    // Field 28 of stat; `rest` starts at field 3.
    let start: u64 = rest.split_whitespace().nth(25)?.parse().ok()?;
    let word = |address: u64| {
        let mut bytes = [0u8; 8];
        (mem.read_at(&mut bytes, address) == Some(8)).then(|| u64::from_le_bytes(bytes))
    };
    let argc = word(start)?;
    // argv, its NULL, then the environment up to its NULL.
    let mut at = start + 8 * (argc + 2);
    for _ in 0..1 << 16 {
        let value = word(at)?;
        at += 8;
        if value == 0 {
            break;
        }
    }
    let mut auxv = Vec::new();
    for _ in 0..256 {
        let (key, value) = (word(at)?, word(at + 8)?);
        auxv.extend(key.to_le_bytes());
        auxv.extend(value.to_le_bytes());
        at += 16;
        if key == 0 {
            return Some(auxv);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = "LEAKSCOPE MEMMAP 1\npid 1\n== smaps\n\
        00400000-00401000 r-xp 00000000 08:01 12 /native-leak\nAnonymous: 0 kB\nVmFlags: rd ex mr mw me dw\n\
        00600000-00602000 rw-p 00001000 08:01 12 /native-leak\nAnonymous: 4 kB\nVmFlags: rd wr mr mw me ac\n\
        01000000-01100000 rw-p 00000000 00:00 0 [heap]\nAnonymous: 1024 kB\nVmFlags: rd wr mr mw me ac\n\
        7f0000000000-7f0000001000 ---p 00000000 00:00 0 \nAnonymous: 0 kB\nVmFlags: mr mw me\n\
        7f0000001000-7f0000002000 rw-s 00000000 00:01 9 /dev/shm/x\nAnonymous: 0 kB\nVmFlags: rd wr sh mr mw me ms\n\
        7ffc00000000-7ffc00001000 r--p 00000000 00:00 0 [vvar]\nVmFlags: rd mr pf io de dd\n\
        == end\n";

    #[test]
    fn reads_mappings_and_follows_the_filter() {
        let maps = mappings(SNAPSHOT);
        assert_eq!(maps.len(), 6);
        assert_eq!((maps[1].offset, maps[1].anonymous_kib, maps[1].path.as_str()), (0x1000, 4, "/native-leak"));
        struct Nothing;
        impl ReadAt for Nothing {
            fn read_at(&self, _: &mut [u8], _: u64) -> Option<usize> {
                None
            }
        }
        let mem = Nothing;
        let dumped: Vec<u64> = maps.iter().map(|m| dumped_bytes(m, DEFAULT_FILTER, &mem)).collect();
        // text: not dumped (its ELF page cannot be read here); written data: whole; heap: whole;
        // guard: none; a shared file: not by default; vvar: never.
        assert_eq!(dumped, vec![0, 0x2000, 0x100000, 0, 0, 0]);
        assert_eq!(dumped_bytes(&maps[4], DEFAULT_FILTER | 8, &mem), 0x1000);
        assert_eq!(dumped_bytes(&maps[2], 0, &mem), 0);
    }

    #[test]
    fn the_auxiliary_vector_read_from_the_stack_is_the_kernels() {
        let pid = std::process::id() as i32;
        let from_stack = auxv_from_stack(pid, &Memory(pid)).expect("our own stack is readable");
        assert_eq!(from_stack, std::fs::read("/proc/self/auxv").unwrap());
    }

    #[test]
    fn notes_and_headers_have_the_kernels_layout() {
        let mut notes = Vec::new();
        note(&mut notes, "CORE", NT_AUXV, &[1, 2, 3]);
        assert_eq!(notes.len(), 12 + 8 + 4);
        assert_eq!(&notes[12..17], b"CORE\0");
        assert_eq!(elf_header(3).len(), 64);
        assert_eq!(program_header(PT_LOAD, 6, 0, 0, 0, 0, PAGE).len(), 56);
        let regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        assert_eq!(prstatus(1, (0, 1, 1), &regs, true).len(), 336);
        assert_eq!(std::mem::size_of::<libc::user_regs_struct>(), 216);
        assert_eq!(std::mem::size_of::<libc::user_fpregs_struct>(), 512);
        let files = mapped_files(&mappings(SNAPSHOT));
        assert_eq!(u64::from_le_bytes(files[..8].try_into().unwrap()), 3);
    }
}
