//! Making a running CPython queue our code, with ptrace (x86_64 Linux).
//!
//! Written by hand because no crate does it: stop one thread with
//! PTRACE_SEIZE + PTRACE_INTERRUPT (the other threads run on), borrow it for
//! a `mmap` syscall (single-stepped on a `syscall` instruction found in the
//! process's own code) and one function call (`Py_AddPendingCall`, returning
//! to address 0 so that its return traps), then put every register back and
//! detach. The thread is stopped for a few milliseconds. A thread stopped in a
//! blocking system call has it restarted by the kernel as after any signal,
//! because its saved registers (with `orig_rax`) are restored unchanged.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::ptrace::{self, errno, refused, seize_and_interrupt};

/// Where the functions are in the target's memory.
pub struct Symbols {
    add_pending_call: u64,
    run_simple_string: u64,
    /// libc's `shmdt`, queued after the walk so that its page goes away on its own.
    shmdt: Option<u64>,
}

/// Our page in the target.
pub struct Page {
    address: u64,
    length: u64,
    /// A System V segment already marked for removal, detached by the queued `shmdt`.
    detaches_itself: bool,
}

impl Page {
    /// True when nothing is left to clean up once the interpreter has run the queued calls.
    pub fn detaches_itself(&self) -> bool {
        self.detaches_itself
    }
}

impl Symbols {
    /// From the ELF files mapped into the process (the executable, or libpython).
    pub fn find(pid: i32) -> Result<Symbols, String> {
        let files = mapped_files(pid)?;
        let python = files.iter().take(4).find_map(|(path, start)| {
            let data = read_mapped(pid, path)?;
            Some((lookup(&data, *start, "Py_AddPendingCall")?, lookup(&data, *start, "PyRun_SimpleString")?))
        });
        let libc_first = files.iter().filter(|(p, _)| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libc") || n.starts_with("ld-musl")));
        let shmdt = libc_first.chain(files.iter().take(2)).find_map(|(path, start)| lookup(&read_mapped(pid, path)?, *start, "shmdt"));
        if let Some((add_pending_call, run_simple_string)) = python {
            return Ok(Symbols { add_pending_call, run_simple_string, shmdt });
        }
        Err(format!(
            "process {pid} has no Py_AddPendingCall and PyRun_SimpleString in its executable or libpython \
             (a CPython built without exported symbols, or not CPython)"
        ))
    }
}

/// The ELF files mapped into the process with the address of their first
/// mapping: libpython first when there is one, then the executable, then the rest.
pub fn mapped_files(pid: i32) -> Result<Vec<(PathBuf, u64)>, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| format!("reading the memory map of {pid}: {e}"))?;
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !f[5].starts_with('/') || u64::from_str_radix(f[2], 16) != Ok(0) {
            continue;
        }
        let start = f[0].split('-').next().and_then(|s| u64::from_str_radix(s, 16).ok()).unwrap_or(0);
        let path = PathBuf::from(f[5]);
        if !files.iter().any(|(p, _)| *p == path) {
            files.push((path, start));
        }
    }
    files.sort_by_key(|(p, _)| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("libpython") {
            0
        } else if name.starts_with("python") {
            1
        } else {
            2
        }
    });
    Ok(files)
}

/// A mapped file's bytes, through /proc/PID/root: the target's own
/// filesystem view, whatever ours is.
pub fn read_mapped(pid: i32, path: &std::path::Path) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/root{}", path.display())).or_else(|_| std::fs::read(path)).ok()
}

/// Where the ELF file mapped at `mapped_at` puts `address` (a link-time address) in the process.
fn load_bias(file: &object::File, mapped_at: u64) -> Option<u64> {
    use object::{Object, ObjectSegment};
    let lowest = file.segments().map(|s| s.address()).min()? & !0xfff;
    Some(mapped_at.wrapping_sub(lowest))
}

/// A function's address in the process, from the ELF file mapped at `mapped_at`.
pub fn lookup(data: &[u8], mapped_at: u64, name: &str) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(data).ok()?;
    let bias = load_bias(&file, mapped_at)?;
    file.dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.name() == Ok(name) && s.address() != 0)
        .map(|s| s.address().wrapping_add(bias))
}

/// A section's address in the process, from the ELF file mapped at `mapped_at`.
pub fn section_address(data: &[u8], mapped_at: u64, name: &str) -> Option<u64> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(data).ok()?;
    let bias = load_bias(&file, mapped_at)?;
    let section = file.section_by_name(name)?;
    (section.address() != 0).then(|| section.address().wrapping_add(bias))
}

/// A seized, stopped thread; detaches when dropped (after putting its registers back).
struct Stopped {
    pid: i32,
    saved: libc::user_regs_struct,
    /// A signal that arrived for the program while we held the thread: delivered at detach.
    pending_signal: i32,
}

impl Stopped {
    fn seize(pid: i32) -> Result<Stopped, String> {
        seize_and_interrupt(pid).map_err(|e| refused(pid, "attach", e))?;
        let mut stopped = Stopped { pid, saved: unsafe { std::mem::zeroed() }, pending_signal: 0 };
        stopped.wait_stop(Duration::from_secs(5)).map_err(|e| format!("stopping process {pid}: {e}"))?;
        stopped.saved = stopped.regs()?;
        Ok(stopped)
    }

    /// Waits for the next stop; returns its signal (SIGTRAP for our own traps and the interrupt).
    fn wait_stop(&mut self, limit: Duration) -> Result<i32, String> {
        ptrace::wait_stop(self.pid, limit).map(|(signal, _)| signal)
    }

    fn regs(&self) -> Result<libc::user_regs_struct, String> {
        ptrace::regs(self.pid)
    }

    fn set_regs(&self, regs: &libc::user_regs_struct) -> Result<(), String> {
        // SAFETY: SETREGS reads one user_regs_struct.
        if unsafe { libc::ptrace(libc::PTRACE_SETREGS, self.pid, 0, regs as *const _) } != 0 {
            return Err(refused(self.pid, "write registers", errno()));
        }
        Ok(())
    }

    /// Runs the thread from `regs` until it traps with `expected` (other signals are kept for the program).
    fn run_until(&mut self, regs: &libc::user_regs_struct, single_step: bool, expected: i32) -> Result<libc::user_regs_struct, String> {
        self.set_regs(regs)?;
        let started = Instant::now();
        let mut deliver = 0;
        loop {
            // SAFETY: resuming our stopped tracee.
            let request = if single_step { libc::PTRACE_SINGLESTEP } else { libc::PTRACE_CONT };
            if unsafe { libc::ptrace(request, self.pid, 0, deliver) } != 0 {
                return Err(refused(self.pid, "resume", errno()));
            }
            let signal = self.wait_stop(Duration::from_secs(5).saturating_sub(started.elapsed()))?;
            if signal == expected {
                return self.regs();
            }
            // Someone else's signal (SIGCHLD, SIGTERM…): keep it for the program, not for our call.
            self.pending_signal = signal;
            deliver = 0;
        }
    }

    /// One system call on the thread, at a `syscall` instruction of the process's own code.
    fn syscall(&mut self, gadget: u64, number: u64, args: [u64; 6]) -> Result<u64, String> {
        let mut regs = self.saved;
        regs.rip = gadget;
        regs.rax = number;
        regs.orig_rax = u64::MAX; // not inside a system call: nothing to restart
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        let after = self.run_until(&regs, true, libc::SIGTRAP)?;
        if after.rip != gadget + 2 {
            return Err("the system call did not run where expected".into());
        }
        Ok(after.rax)
    }

    /// Calls `function(a, b)` on the thread; it returns to address 0, which traps.
    fn call(&mut self, function: u64, a: u64, b: u64) -> Result<u64, String> {
        let mut regs = self.saved;
        // Below the red zone, 16-byte aligned before the pushed return address.
        let stack = (regs.rsp - 1024) & !0xf;
        write_memory(self.pid, stack - 8, &0u64.to_le_bytes())?;
        regs.rsp = stack - 8;
        regs.rip = function;
        regs.rdi = a;
        regs.rsi = b;
        regs.rax = 0;
        regs.orig_rax = u64::MAX;
        let after = self.run_until(&regs, false, libc::SIGSEGV)?;
        if after.rip != 0 {
            return Err(format!("the call stopped at {:#x} instead of returning", after.rip));
        }
        Ok(after.rax)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.set_regs(&self.saved);
        ptrace::detach(self.pid, self.pending_signal);
    }
}

pub fn write_memory(pid: i32, address: u64, bytes: &[u8]) -> Result<(), String> {
    let local = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    let remote = libc::iovec { iov_base: address as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: process_vm_writev copies from our buffer into the target; the kernel checks the target range.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if n != bytes.len() as isize {
        return Err(format!("writing into process {pid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

pub fn read_memory(pid: i32, address: u64, length: usize) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; length];
    let local = libc::iovec { iov_base: bytes.as_mut_ptr() as *mut libc::c_void, iov_len: length };
    let remote = libc::iovec { iov_base: address as *mut libc::c_void, iov_len: length };
    // SAFETY: process_vm_readv copies from the target into our buffer of `length` bytes.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    (n > 0).then(|| {
        bytes.truncate(n as usize);
        bytes
    })
}

/// The address of a `syscall` instruction (0f 05) in the process's executable code.
fn syscall_gadget(pid: i32) -> Result<u64, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| e.to_string())?;
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 || !f[1].starts_with("r-x") {
            continue;
        }
        let Some((start, end)) = f[0].split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else { continue };
        let mut at = start;
        while at < end {
            let length = (end - at).min(1 << 20) as usize;
            let Some(code) = read_memory(pid, at, length) else { break };
            if let Some(i) = code.windows(2).position(|w| w == [0x0f, 0x05]) {
                return Ok(at + i as u64);
            }
            at += length as u64 - 1;
        }
    }
    Err("no syscall instruction found in the process's code".into())
}

const PAGE: u64 = 4096;

/// Puts `source` (NUL-terminated) on a new page of the process and queues
/// `PyRun_SimpleString(page)` with `Py_AddPendingCall`, then `shmdt(page)`.
///
/// The page is a System V shared memory segment marked for removal at once:
/// the queued `shmdt` (pending calls run in order) detaches it right after
/// the walk, and the kernel frees it then. So nothing stays behind even when
/// we give up waiting: the interpreter runs the (then emptied) source and
/// drops the page whenever it gets there. Without `shmdt` in the process
/// (a static interpreter), an anonymous mapping that we unmap after the walk.
pub fn queue_pending_call(pid: i32, symbols: &Symbols, source: &[u8]) -> Result<Page, String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("Python capture is implemented for x86_64 only".into());
    }
    let gadget = syscall_gadget(pid)?;
    let length = (source.len() as u64 + 1).div_ceil(PAGE) * PAGE;
    let started = Instant::now();
    let mut thread = Stopped::seize(pid)?;
    let page = match symbols.shmdt {
        Some(_) => {
            let id = thread.syscall(gadget, libc::SYS_shmget as u64, [libc::IPC_PRIVATE as u64, length, (libc::IPC_CREAT | 0o600) as u64, 0, 0, 0])?;
            if id > u64::MAX - 4095 {
                return Err(format!("shmget in process {pid} failed: {}", std::io::Error::from_raw_os_error(-(id as i64) as i32)));
            }
            let address = thread.syscall(gadget, libc::SYS_shmat as u64, [id, 0, 0, 0, 0, 0]);
            // Marked for removal now: it goes when the last attachment does (or at once if shmat failed).
            let _ = thread.syscall(gadget, libc::SYS_shmctl as u64, [id, libc::IPC_RMID as u64, 0, 0, 0, 0]);
            let address = address?;
            if address > u64::MAX - 4095 {
                return Err(format!("shmat in process {pid} failed: {}", std::io::Error::from_raw_os_error(-(address as i64) as i32)));
            }
            Page { address, length, detaches_itself: true }
        }
        None => {
            let address = thread.syscall(
                gadget,
                libc::SYS_mmap as u64,
                [0, length, (libc::PROT_READ | libc::PROT_WRITE) as u64, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, u64::MAX, 0],
            )?;
            if address > u64::MAX - 4095 {
                return Err(format!("mmap in process {pid} failed: {}", std::io::Error::from_raw_os_error(-(address as i64) as i32)));
            }
            Page { address, length, detaches_itself: false }
        }
    };
    let mut text = source.to_vec();
    text.push(0);
    let queued = write_memory(pid, page.address, &text).and_then(|_| thread.call(symbols.add_pending_call, symbols.run_simple_string, page.address));
    match queued {
        Ok(result) if result as u32 == 0 => {
            if let Some(shmdt) = symbols.shmdt {
                // If this one cannot be queued, the segment stays attached: say so, but the walk goes on.
                if !matches!(thread.call(symbols.add_pending_call, shmdt, page.address), Ok(r) if r as u32 == 0) {
                    eprintln!("leakscope: warning the clean-up call could not be queued; a {length}-byte segment stays attached");
                }
            }
            drop(thread);
            eprintln!("leakscope: stopped_ms {}", started.elapsed().as_millis());
            Ok(page)
        }
        other => {
            let undo = if page.detaches_itself { libc::SYS_shmdt } else { libc::SYS_munmap };
            let _ = thread.syscall(gadget, undo as u64, [page.address, page.length, 0, 0, 0, 0]);
            Err(match other {
                Ok(_) => "the interpreter refused to queue the walk (Py_AddPendingCall returned -1: its queue is full)".into(),
                Err(e) => e,
            })
        }
    }
}

/// Gives our page back to the process's memory manager (when it does not go by itself).
pub fn unmap(pid: i32, page: &Page) -> Result<(), String> {
    if page.detaches_itself {
        return Ok(());
    }
    let gadget = syscall_gadget(pid)?;
    let mut thread = Stopped::seize(pid)?;
    let result = thread.syscall(gadget, libc::SYS_munmap as u64, [page.address, page.length, 0, 0, 0, 0])?;
    if result != 0 {
        return Err(format!("munmap returned {}", result as i64));
    }
    Ok(())
}

/// Replaces the queued source by an empty one (the page stays: the queued call will read it).
pub fn neutralise(pid: i32, page: &Page) -> Result<(), String> {
    write_memory(pid, page.address, &[0])
}
