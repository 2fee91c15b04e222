//! Node.js capture benchmark: a node process whose heap snapshot is about
//! 500 MB (`fixtures/bench/big-node-heap.js` in the node fixture image),
//! captured through the API: time from the click to the stored dump next to
//! the process's pause, and the peak memory of `leakscope serve` and of our
//! helper inside the container while the snapshot streams through them.
//!
//! Run: cargo run --release -p end2end --bin bench-node-capture -- [items, default 1500000] [host|image]
//!
//! `host` (the default) runs the host's own `node` binary, mounted read-only
//! into the node fixture image (same Debian libraries): Debian 12's Node 18
//! takes 90 s to write a 160 MB snapshot of this heap where Node 20 takes 6 s,
//! so at 500 MB the image's node would measure V8 18's serialiser, not us.
//! `image` uses the image's own node.

use std::path::Path;
use std::time::{Duration, Instant};

use end2end::{docker, fixture_image, Server, TestContainer};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Resident KiB of our helper in the container, 0 while it does not run.
fn helper_rss_kib(container: &str) -> u64 {
    // The engine needs a pid column in `docker top`.
    let top = std::process::Command::new("docker").args(["top", container, "-eo", "pid,rss,args"]).output();
    let text = top.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("leakscope-agent"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

fn main() {
    let items: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_500_000);
    let host_node = std::env::args().nth(2).as_deref() != Some("image");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bench/big-node-heap.js");
    let mount = format!("{}:/app/big.js:ro", script.display());
    let items_env = format!("ITEMS={items}");
    let mut options = vec!["-v".to_string(), mount, "-e".into(), items_env, "-m".into(), "8g".into()];
    let node_bin = if host_node {
        let host = std::process::Command::new("sh").args(["-c", "readlink -f \"$(command -v node)\""]).output().expect("sh runs");
        let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
        assert!(!host.is_empty(), "no node on this host: install nodejs or pass `image`");
        options.extend(["-v".to_string(), format!("{host}:/opt/host-node/node:ro")]);
        "/opt/host-node/node"
    } else {
        "node"
    };
    let server = Server::start(&[], &[]);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let node = TestContainer::run_image(
        "bench-node-capture",
        &fixture_image("node"),
        &options,
        &[node_bin, "--max-old-space-size=6000", "/app/big.js"],
    );
    let version = docker(&["exec", &node.name, node_bin, "--version"]);
    let started = Instant::now();
    while !docker(&["logs", &node.name]).contains("big heap ready") {
        assert!(started.elapsed() < Duration::from_secs(300), "the node heap was not built in time");
        std::thread::sleep(Duration::from_millis(200));
    }

    let pid = server.pid();
    let baseline = rss_kib(pid);
    let clicked = Instant::now();
    let job = server.capture_job(&node.name, "");
    let (mut server_peak, mut helper_peak, mut samples) = (baseline, 0, 0);
    let state = loop {
        server_peak = server_peak.max(rss_kib(pid));
        helper_peak = helper_peak.max(helper_rss_kib(&node.name));
        samples += 1;
        let (_, state) = server.get_json(&format!("/api/v1/jobs/{job}"));
        if state["state"] != "running" {
            break state;
        }
    };
    let click_to_stored = clicked.elapsed().as_secs_f64();
    assert_eq!(state["state"], "done", "{state}");
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{}", state["dump_id"].as_str().unwrap()));
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("node {} ({}), {items} items", version.trim(), if host_node { "the host's, mounted" } else { "the image's" });
    println!("snapshot: {:.0} MB, {} objects, {}", info["size_bytes"].as_f64().unwrap() / 1e6, state["objects_total"], info["runtime"]);
    println!("click to stored dump: {click_to_stored:.1} s; node paused {:.1} s", info["pause_ms"].as_f64().unwrap() / 1000.0);
    println!("leakscope serve RSS: {:.0} MiB before, peak {:.0} MiB (+{:.0} MiB)", mib(baseline), mib(server_peak), mib(server_peak - baseline));
    println!("helper RSS in the container: peak {:.1} MiB ({samples} samples)", mib(helper_peak));
}
