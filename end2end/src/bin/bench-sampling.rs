//! Sampling benchmark: N running containers (default 100), one sweep through
//! the host cgroup files and through the Engine API, `docker stats
//! --no-stream` on the same containers, and the CPU that `leakscope serve`
//! uses at its default 2-s interval.
//!
//! Run: cargo run --release -p end2end --bin bench-sampling -- [containers] [cpu-seconds]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{busybox_image, docker, leakscope_bin};
use leakscope_engine::{Engine, EngineConfig, StatsSource};

const LABEL: &str = "io.leakscope.bench=sampling";

fn remove_bench_containers() {
    end2end::remove_labelled(LABEL);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn sweep_times(source: StatsSource, n: usize, rounds: usize) -> Vec<f64> {
    let dir = std::env::temp_dir().join(format!("leakscope-bench-{}-{source:?}", std::process::id()));
    let mut config = EngineConfig::new(&dir);
    config.stats_source = source;
    config.sample_interval = Duration::from_secs(3600); // only our explicit sweeps
    let engine = Engine::start(config).expect("engine starts");
    let start = Instant::now();
    while engine.tracked_count() < n {
        assert!(start.elapsed() < Duration::from_secs(120), "discovery too slow");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    engine.sample_now().await; // warm-up
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        engine.sample_now().await;
        times.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&dir);
    times
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let cpu_seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let image = busybox_image();
    remove_bench_containers();
    eprintln!("starting {n} containers…");
    for i in 0..n {
        docker(&["run", "-d", "--label", LABEL, "--memory", "64m", "--name", &format!("lsbench-{i}"), &image, "sleep", "100000"]);
    }
    let existing: usize = docker(&["ps", "-q"]).lines().count();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let cgroup = rt.block_on(sweep_times(StatsSource::Cgroup, existing, 10));
    let api = rt.block_on(sweep_times(StatsSource::Api, existing, 5));

    let mut stats = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new("docker").args(["stats", "--no-stream"]).stdout(Stdio::null()).status().unwrap();
        assert!(out.success());
        stats.push(t.elapsed().as_secs_f64());
    }

    // CPU of the real server at its default interval.
    let data = std::env::temp_dir().join(format!("leakscope-bench-serve-{}", std::process::id()));
    let mut child = Command::new(leakscope_bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_secs(cpu_seconds));
    let after = cpu_ticks(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    let cpu_pct = (after - before) as f64 / ticks_per_second / cpu_seconds as f64 * 100.0;

    remove_bench_containers();
    let (c, a, s) = (median(cgroup), median(api), median(stats));
    println!("containers running:                  {existing}");
    println!("sweep via host cgroup files (median): {:.1} ms", c * 1000.0);
    println!("sweep via Engine API (median):        {:.1} ms", a * 1000.0);
    println!("docker stats --no-stream (median):    {:.1} ms", s * 1000.0);
    println!("ratio docker stats / cgroup sweep:    {:.0}x", s / c);
    println!("ratio docker stats / API sweep:       {:.1}x", s / a);
    println!("leakscope serve CPU at 2-s interval:  {cpu_pct:.2} % of one core over {cpu_seconds} s");
    println!("targets: sweep <= 500 ms, CPU <= 2 %");
}
