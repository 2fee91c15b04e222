//! The ptrace steps both the Python walk and core dumps take (x86_64 Linux):
//! seize and stop a thread without a signal the program could see, wait for
//! its stop, read its registers, and say in words why the kernel refused.
//! Written by hand: no crate wraps PTRACE_SEIZE/INTERRUPT for a static helper.

use std::time::{Duration, Instant};

/// Why ptrace was refused, in words, with what to change.
pub fn refused(pid: i32, what: &str, errno: i32) -> String {
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").map(|s| s.trim().to_string()).unwrap_or_default();
    let tracer = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("TracerPid:")).and_then(|v| v.trim().parse::<i64>().ok()))
        .unwrap_or(0);
    match errno {
        libc::EPERM if tracer != 0 => format!(
            "ptrace was refused ({what}): process {pid} is already being traced by process {tracer} (a debugger or another \
             tool; a process has one tracer at a time). Detach it and capture again"
        ),
        libc::EPERM => format!(
            "ptrace was refused ({what}: operation not permitted). Leakscope runs this step as root with CAP_SYS_PTRACE \
             (a privileged exec); it is refused when the engine denies privileged execs, a seccomp profile blocks ptrace, \
             Yama forbids attaching (kernel.yama.ptrace_scope is {}; 3 forbids it for everyone), or a debugger outside \
             the container already traces the process (one tracer at a time). Allow ptrace, or detach the debugger",
            if yama.is_empty() { "not set".to_string() } else { yama }
        ),
        libc::ESRCH => format!("process {pid} is gone"),
        _ => format!("ptrace {what} failed: {}", std::io::Error::from_raw_os_error(errno)),
    }
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Seizes thread `tid` and asks it to stop (no signal the program sees); call [`wait_stop`] next.
/// Returns the errno when the kernel refuses.
pub fn seize_and_interrupt(tid: i32) -> Result<(), i32> {
    // SAFETY: plain ptrace requests on a pid; errors come back as -1 and errno.
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) != 0 {
            return Err(errno());
        }
        if libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) != 0 {
            let e = errno();
            libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0);
            return Err(e);
        }
    }
    Ok(())
}

/// Waits for the next stop of our tracee `tid`; returns its signal (SIGTRAP
/// for our own traps and the interrupt) and whether it is the interrupt's
/// stop rather than a signal for the program.
pub fn wait_stop(tid: i32, limit: Duration) -> Result<(i32, bool), String> {
    let started = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our tracee.
        let got = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if got < 0 {
            return Err(format!("waiting for the thread: {}", std::io::Error::last_os_error()));
        }
        if got == 0 {
            if started.elapsed() > limit {
                return Err("the thread did not stop in time".into());
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Err("the process ended".into());
        }
        if libc::WIFSTOPPED(status) {
            let event_stop = (status >> 16) == libc::PTRACE_EVENT_STOP;
            return Ok((libc::WSTOPSIG(status), event_stop));
        }
    }
}

/// The general registers of a stopped tracee.
pub fn regs(tid: i32) -> Result<libc::user_regs_struct, String> {
    // SAFETY: GETREGS writes one user_regs_struct.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    if unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut _) } != 0 {
        return Err(refused(tid, "read registers", errno()));
    }
    Ok(regs)
}

/// The floating-point and SSE registers of a stopped tracee (the FXSAVE area).
pub fn fpregs(tid: i32) -> Result<libc::user_fpregs_struct, String> {
    // SAFETY: GETFPREGS writes one user_fpregs_struct.
    let mut regs: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
    if unsafe { libc::ptrace(libc::PTRACE_GETFPREGS, tid, 0, &mut regs as *mut _) } != 0 {
        return Err(refused(tid, "read floating-point registers", errno()));
    }
    Ok(regs)
}

/// Lets the tracee go, delivering `signal` (one that arrived for the program while we held it) if not 0.
pub fn detach(tid: i32, signal: i32) {
    // SAFETY: detaching from our tracee.
    unsafe {
        libc::ptrace(libc::PTRACE_DETACH, tid, 0, signal);
    }
}
