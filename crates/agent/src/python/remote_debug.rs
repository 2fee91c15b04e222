//! CPython 3.14 and later: asking the interpreter to run our bootstrap through
//! its own remote-debugging interface (PEP 768, what `sys.remote_exec` does),
//! without ptrace and without stopping any thread.
//!
//! The interpreter keeps a table of its structures' offsets (`_Py_DebugOffsets`)
//! at the start of `_PyRuntime`, in the ELF section `.PyRuntime`. From it we
//! find the main thread's state, write the path of a script into its
//! `remote_debugger_support` buffer, set its pending flag and the "please stop"
//! bit of its eval breaker. At its next safe point (the same check that runs
//! signal handlers) the thread opens the path with `io.open_code`, runs the
//! source in a fresh namespace and goes on.
//!
//! The script is never written into the container: it lives in a memfd held
//! by a child of ours that runs as the target's user with no capabilities, so
//! the target may open it as `/proc/<child>/fd/<n>` (the kernel checks that
//! the target could read that process: same user, no extra capabilities). The
//! child goes when we are done.
//!
//! Written by hand: no crate speaks this protocol from outside the process.

use super::inject::{mapped_files, read_mapped, read_memory, section_address, write_memory, lookup};
use crate::ptrace::{errno, refused};

/// `_PY_EVAL_PLEASE_STOP_BIT` of `PyThreadState.eval_breaker` (pycore_ceval.h).
const PLEASE_STOP_BIT: u64 = 1 << 5;

/// The number of u64 fields of each group of `_Py_DebugOffsets` before
/// `debugger_support`, by CPython minor version (pycore_debug_offsets.h):
/// runtime_state, interpreter_state, thread_state, interpreter_frame,
/// code_object, pyobject, type_object, tuple_object, list_object, set_object,
/// dict_object, float_object, long_object, bytes_object, unicode_object, gc,
/// gen_object, llist_node.
const GROUPS_3_14: [usize; 18] = [3, 16, 9, 8, 11, 2, 4, 3, 3, 4, 3, 2, 3, 3, 4, 2, 4, 2];

/// Where things are in the target, from its debug offsets.
struct Offsets {
    /// `PY_VERSION_HEX` of the target.
    version: u64,
    interpreters_head: u64,
    threads_main: u64,
    interpreter_size: u64,
    thread_size: u64,
    eval_breaker: u64,
    remote_debugger_support: u64,
    remote_debugging_enabled: u64,
    pending_call: u64,
    script_path: u64,
    script_path_size: u64,
}

/// A request written into the target, to take back if it has not run.
pub struct Request {
    pid: i32,
    pending_at: u64,
}

impl Request {
    /// Clears the pending flag, so that a walk given up on does not run later.
    pub fn withdraw(&self) {
        let _ = write_memory(self.pid, self.pending_at, &0i32.to_le_bytes());
    }
}

/// `(3, 14)` from "3.14" or "3.14.2"; None when the name says no minor version.
pub fn minor_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// True for the interpreters that speak PEP 768 with a layout we know.
pub fn speaks(version: (u32, u32)) -> bool {
    version == (3, 14)
}

/// Where `_PyRuntime` is in the process: its own section, else its symbol.
fn runtime_address(pid: i32) -> Result<u64, String> {
    for (path, start) in mapped_files(pid)?.iter().take(4) {
        let Some(data) = read_mapped(pid, path) else { continue };
        if let Some(address) = section_address(&data, *start, ".PyRuntime").or_else(|| lookup(&data, *start, "_PyRuntime")) {
            return Ok(address);
        }
    }
    Err(format!("process {pid} has no .PyRuntime section or _PyRuntime symbol in its executable or libpython"))
}

fn read_u64(pid: i32, address: u64) -> Result<u64, String> {
    let bytes = read_memory(pid, address, 8).filter(|b| b.len() == 8).ok_or_else(|| unreadable(pid, address))?;
    Ok(u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
}

fn read_i32(pid: i32, address: u64) -> Result<i32, String> {
    let bytes = read_memory(pid, address, 4).filter(|b| b.len() == 4).ok_or_else(|| unreadable(pid, address))?;
    Ok(i32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])))
}

fn unreadable(pid: i32, address: u64) -> String {
    match errno() {
        libc::EPERM | libc::EACCES => refused(pid, "reading its memory", libc::EPERM),
        libc::ESRCH => format!("process {pid} is gone"),
        e => format!("reading process {pid} at {address:#x}: {}", std::io::Error::from_raw_os_error(e)),
    }
}

fn offsets(pid: i32, runtime: u64) -> Result<Offsets, String> {
    let fields: usize = 2 + GROUPS_3_14.iter().sum::<usize>() + 6;
    let raw = read_memory(pid, runtime, 8 + 8 * fields).filter(|b| b.len() == 8 + 8 * fields).ok_or_else(|| unreadable(pid, runtime))?;
    if &raw[..8] != b"xdebugpy" {
        return Err(format!("process {pid}: _PyRuntime does not start with CPython's debug offsets (not CPython 3.14, or a modified build)"));
    }
    let at = |i: usize| u64::from_le_bytes(raw[8 + 8 * i..16 + 8 * i].try_into().unwrap_or([0; 8]));
    // Index of each group's first field, after `version` and `free_threaded`.
    let mut starts = Vec::with_capacity(GROUPS_3_14.len() + 1);
    let mut next = 2;
    for n in GROUPS_3_14 {
        starts.push(next);
        next += n;
    }
    let support = next;
    let offsets = Offsets {
        version: at(0),
        interpreters_head: at(starts[0] + 2),
        interpreter_size: at(starts[1]),
        threads_main: at(starts[1] + 4),
        thread_size: at(starts[2]),
        eval_breaker: at(support),
        remote_debugger_support: at(support + 1),
        remote_debugging_enabled: at(support + 2),
        pending_call: at(support + 3),
        script_path: at(support + 4),
        script_path_size: at(support + 5),
    };
    // The layout is checked before anything is written: a table that does not
    // look like 3.14's is refused, never guessed at.
    let o = &offsets;
    let plausible = (o.version >> 16) == 0x030e
        && o.thread_size > 64
        && o.thread_size < 1 << 16
        && o.eval_breaker < o.thread_size
        && o.remote_debugger_support < o.thread_size
        && o.remote_debugging_enabled < o.interpreter_size
        && o.threads_main < o.interpreter_size
        && o.pending_call < 64
        && o.script_path < 64
        && (16..=1 << 16).contains(&o.script_path_size);
    if !plausible {
        return Err(format!(
            "process {pid}: CPython's debug offsets (version {:#x}) do not have the layout of CPython 3.14 that Leakscope knows; \
             nothing was written into the process",
            o.version
        ));
    }
    Ok(offsets)
}

/// Asks the main thread of `pid` to run the script at `path` (a path the
/// target can open) at its next safe point.
pub fn request(pid: i32, path: &str) -> Result<Request, String> {
    let runtime = runtime_address(pid)?;
    let o = offsets(pid, runtime)?;
    eprintln!("leakscope: remote_debug {}.{}.{}", o.version >> 24, (o.version >> 16) & 0xff, (o.version >> 8) & 0xff);
    let interpreter = read_u64(pid, runtime + o.interpreters_head)?;
    if interpreter == 0 {
        return Err(format!("process {pid}: the interpreter is not running yet, or is shutting down"));
    }
    if read_i32(pid, interpreter + o.remote_debugging_enabled)? == 0 {
        return Err(format!(
            "process {pid} was started with remote debugging disabled (-X disable_remote_debug, PYTHON_DISABLE_REMOTE_DEBUG, \
             or a build without it), so it refuses to run a debugger's script: Leakscope respects that and captured nothing. \
             Start it without that option to allow captures"
        ));
    }
    let thread = read_u64(pid, interpreter + o.threads_main)?;
    if thread == 0 {
        return Err(format!("process {pid}: the interpreter has no main thread state"));
    }
    if path.len() + 1 > o.script_path_size as usize {
        return Err(format!("the script path {path} is longer than the interpreter's {}-byte buffer", o.script_path_size));
    }
    let support = thread + o.remote_debugger_support;
    let mut buffer = path.as_bytes().to_vec();
    buffer.push(0);
    write_memory(pid, support + o.script_path, &buffer)?;
    write_memory(pid, support + o.pending_call, &1i32.to_le_bytes())?;
    // The interpreter sets and clears other bits of this word with atomics; a
    // read-or-write from outside can lose a bit set in between, which CPython's
    // own sys.remote_exec accepts too: a lost "please stop" only delays us until
    // the timeout, a lost other bit is set again by whoever needs it.
    let breaker = read_u64(pid, thread + o.eval_breaker)?;
    write_memory(pid, thread + o.eval_breaker, &(breaker | PLEASE_STOP_BIT).to_le_bytes())?;
    Ok(Request { pid, pending_at: support + o.pending_call })
}

/// A script the target can open by path while we live, kept in memory only.
pub struct Script {
    holder: libc::pid_t,
    /// Our end of a pipe the holder waits on: closing it lets the holder exit.
    /// (A signal cannot do it: we lack CAP_KILL for another user's process.)
    release: Option<std::fs::File>,
    path: String,
}

impl Script {
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Puts `source` into a memfd and starts a child that holds it as `uid`:`gid`
    /// with no capabilities, so that a process of that user may open it.
    ///
    /// A child process rather than a thread of ours with those credentials: a
    /// thread shares our memory, and the target's user could ptrace it.
    pub fn serve(source: &[u8], uid: u32, gid: u32) -> Result<Script, String> {
        use std::io::{Read, Write};
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create takes a NUL-terminated name and returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(c"leakscope-walk".as_ptr(), 0) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is ours and open; the File owns and closes it.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(source).map_err(|e| format!("writing the script to memory: {e}"))?;
        let pipe = || {
            let mut ends = [0i32; 2];
            // SAFETY: pipe2 fills two fds.
            if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(format!("pipe: {}", std::io::Error::last_os_error()));
            }
            Ok(ends)
        };
        let (ready, stay) = (pipe()?, pipe()?);
        // SAFETY: the helper is single-threaded here, so the child may run
        // ordinary code; it only makes system calls, then waits for the pipe to close.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if child == 0 {
            // SAFETY: plain system calls on our own process and fds.
            unsafe {
                libc::close(ready[0]);
                libc::close(stay[1]);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let ok = libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setresgid(gid, gid, gid) == 0
                    && libc::setresuid(uid, uid, uid) == 0
                    && drop_capabilities()
                    && libc::prctl(libc::PR_SET_DUMPABLE, 1) == 0;
                let word: u8 = if ok { b'r' } else { b'x' };
                libc::write(ready[1], &word as *const u8 as *const libc::c_void, 1);
                let mut byte = 0u8;
                // Returns 0 when our parent closes its end (or dies).
                while libc::read(stay[0], &mut byte as *mut u8 as *mut libc::c_void, 1) < 0 && errno() == libc::EINTR {}
                libc::_exit(0);
            }
        }
        // SAFETY: closing the child's ends in this process; ours become Files.
        let (mut ready_end, release) = unsafe {
            libc::close(ready[1]);
            libc::close(stay[0]);
            (std::fs::File::from_raw_fd(ready[0]), std::fs::File::from_raw_fd(stay[1]))
        };
        let script = Script { holder: child, release: Some(release), path: format!("/proc/{child}/fd/{fd}") };
        let mut word = [0u8; 1];
        match ready_end.read(&mut word) {
            Ok(1) if word[0] == b'r' => {
                drop(file);
                Ok(script)
            }
            _ => Err(format!("could not hold the script as user {uid}:{gid} (setresuid or capset refused)")),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // Closing the pipe lets the holder exit; reaped so that no zombie stays.
        self.release = None;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.holder, std::ptr::null_mut(), 0) };
    }
}

/// Empties the permitted, effective and inheritable sets: the target must
/// hold every capability we hold to open our files under /proc.
fn drop_capabilities() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset reads a version-3 header and two data words.
    unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) == 0 }
}
