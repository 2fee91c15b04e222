//! Capture benchmark: a JVM whose heap dump is about 1 GiB; `docker cp` of that
//! dump against Leakscope's copy stage (streamed, hashed and zstd-compressed
//! into the store), side by side in one run; and the peak RSS of `leakscope
//! serve` while it captures.
//!
//! Run: cargo run --release -p end2end --bin bench-capture -- [dump-MiB]

use std::time::{Duration, Instant};

use end2end::{docker, fixture_image, Server, TestContainer};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let target_mib: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let server = Server::start(&[], &[]);
    // Fill a cache at 512 MiB/s until the heap holds about `target_mib`, then stay there.
    let leak = filled_jvm("bench-capture", target_mib, &[]);

    // docker cp of a dump of the same JVM, same disk.
    let out = docker(&["exec", &leak.name, "jcmd", "1", "GC.heap_dump", "/tmp/reference.hprof"]);
    assert!(out.contains("Heap dump file created"), "{out}");
    let target = server.data_dir.join("reference.hprof");
    let started = Instant::now();
    docker(&["cp", &format!("{}:/tmp/reference.hprof", leak.name), target.to_str().unwrap()]);
    let cp_seconds = started.elapsed().as_secs_f64();
    let reference_bytes = std::fs::metadata(&target).unwrap().len();
    std::fs::remove_file(&target).unwrap();
    docker(&["exec", &leak.name, "rm", "/tmp/reference.hprof"]);
    let cp_rate = reference_bytes as f64 / cp_seconds;

    let archive = capture(&server, &leak.name);
    drop(leak);
    // A read-only root filesystem with /tmp on tmpfs: the copy goes through exec.
    let tmpfs = format!("/tmp:exec,size={}m", target_mib * 2);
    let exec_jvm = filled_jvm("bench-capture-exec", target_mib, &["--read-only", "--tmpfs", &tmpfs]);
    let exec = capture(&server, &exec_jvm.name);
    let mib = |b: f64| b / 1048576.0;
    println!("dump: {:.0} MiB (docker cp reference {:.0} MiB)", mib(archive.bytes as f64), mib(reference_bytes as f64));
    println!("docker cp:                          {:.0} MiB/s ({cp_seconds:.2} s)", mib(cp_rate));
    println!("leakscope copy, archive API:        {:.0} MiB/s = {:.2}x docker cp", mib(archive.rate), archive.rate / cp_rate);
    println!("leakscope copy, exec (tmpfs /tmp):  {:.0} MiB/s = {:.2}x docker cp", mib(exec.rate), exec.rate / cp_rate);
    for (route, c) in [("archive", &archive), ("exec", &exec)] {
        println!("leakscope serve RSS ({route}): {} MiB before, peak {} MiB during the capture", c.baseline_rss_kib / 1024, c.peak_rss_kib / 1024);
    }
}

struct Captured {
    bytes: u64,
    rate: f64,
    baseline_rss_kib: u64,
    peak_rss_kib: u64,
}

/// Captures through the API while sampling the server's RSS.
fn capture(server: &Server, container: &str) -> Captured {
    let pid = server.pid();
    let baseline_rss = rss_kib(pid);
    let (status, body) = server.post_bytes(&format!("/api/v1/containers/{container}/dumps"), b"");
    assert_eq!(status, 202, "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let mut peak_rss = baseline_rss;
    let state = loop {
        peak_rss = peak_rss.max(rss_kib(pid));
        let (_, state) = server.get_json(&format!("/api/v1/jobs/{job_id}"));
        if state["state"] != "running" {
            break state;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(state["state"], "done", "{state}");
    Captured {
        bytes: state["bytes_total"].as_u64().unwrap(),
        // Bytes over the copy stage's wall time, as the server measured it.
        rate: state["rate_bytes_per_sec"].as_f64().unwrap(),
        baseline_rss_kib: baseline_rss,
        peak_rss_kib: peak_rss,
    }
}

fn filled_jvm(what: &str, target_mib: u64, extra: &[&str]) -> TestContainer {
    let cache = format!("CACHE_MIB={target_mib}");
    let limit = format!("{}m", target_mib * 3 + 512);
    let mut options = vec![
        "-e", "MODE=warmup", "-e", cache.as_str(), "-e", "LEAK_KIB_PER_SEC=524288", "-e", "OBJECT_BYTES=65536", "-m", limit.as_str(),
    ];
    options.extend_from_slice(extra);
    let jvm = TestContainer::run_image(what, &fixture_image("java"), &options, &[]);
    std::thread::sleep(Duration::from_secs_f64(target_mib as f64 / 512.0 + 3.0));
    jvm
}
