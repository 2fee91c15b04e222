//! Keeping the server's own footprint flat over weeks of uptime.
//!
//! A one-hour soak showed the live heap at ~4 MB (heaptrack) while RssAnon
//! rose 13 MiB/h: glibc kept freed memory in per-thread arenas (up to eight
//! per core) that tokio's many blocking threads each touch, and returns the
//! top of each arena only. Two arenas, and handing free pages back every
//! minute, keep the resident set to what is in use. Analysis's big arrays are
//! `mmap`ed blocks outside the arenas, so neither setting slows it down.

use std::time::Duration;

/// Arena count for the server (glibc's default is 8 × cores).
const ARENAS: i32 = 2;
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Before any thread starts. `MALLOC_ARENA_MAX` in the environment wins.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Every minute, give the pages no arena uses back to the kernel.
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Walks every arena under its lock: a few ms, off the async workers.
            // SAFETY: malloc_trim has no preconditions.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    });
}
