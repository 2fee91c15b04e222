//! V8 heap snapshot analysis against memlab, side by side in one run, on the
//! same file: memlab's `getFullHeapFromFile` (parse, dominators, every
//! node's retained size) and `leakscope analyze --json` (parse, dominators,
//! retained sizes, histogram, suspects, paths). Prints wall time and peak
//! RssAnon of each run, the medians, the ratio, and whether the biggest
//! retainers both list have the same retained sizes.
//!
//! `cargo run --release -p end2end --bin bench-v8 [-- SNAPSHOT]`
//! Without SNAPSHOT it writes `target/bench/big.heapsnapshot` first with
//! `end2end/fixtures/bench/big-node-heap.js` (424 MB, 5.2 M nodes with
//! Node 20). memlab comes from `./dev test`'s pinned install, or
//! `LEAKSCOPE_MEMLAB_MODULES`. Runs: `MEMLAB_RUNS` (3), `LEAKSCOPE_RUNS` (7).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One finished run: wall seconds, peak RssAnon in MiB, stdout.
struct Run {
    seconds: f64,
    peak_anon_mib: f64,
    stdout: String,
}

/// Runs a command to its end, sampling its RssAnon every few milliseconds.
fn measure(command: &mut Command) -> Run {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("the command starts");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).ok();
        text
    });
    let mut peak_kib = 0u64;
    loop {
        if let Some(kib) = end2end::load::rss_anon_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{command:?} failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = started.elapsed().as_secs_f64();
    Run { seconds, peak_anon_mib: peak_kib as f64 / 1024.0, stdout: reader.join().unwrap_or_default() }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn runs(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
    let snapshot = match std::env::args().nth(1) {
        Some(path) => PathBuf::from(path),
        None => {
            let path = root.join("target/bench/big.heapsnapshot");
            if !path.is_file() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                eprintln!("writing {} (about 15 s)", path.display());
                let status = Command::new("node")
                    .args(["--max-old-space-size=4000"])
                    .arg(root.join("end2end/fixtures/bench/big-node-heap.js"))
                    .arg(&path)
                    .status()
                    .expect("node runs");
                assert!(status.success(), "writing the snapshot failed");
            }
            path
        }
    };
    let modules = std::env::var("LEAKSCOPE_MEMLAB_MODULES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/leakscope/memlab-2.0.5/node_modules")
    });
    if !modules.join("@memlab/heap-analysis").is_dir() {
        eprintln!("memlab is not installed at {} (./dev test installs it, or set LEAKSCOPE_MEMLAB_MODULES)", modules.display());
        std::process::exit(2);
    }
    let size_mib = std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    println!("snapshot {} ({size_mib:.0} MiB)", snapshot.display());

    // Each tool once before timing, so both start with the file in the page cache.
    std::fs::read(&snapshot).expect("the snapshot reads");
    let memlab_script = root.join("end2end/fixtures/bench/memlab-full-heap.js");
    let mut memlab_runs = Vec::new();
    for i in 0..runs("MEMLAB_RUNS", 3) {
        let run = measure(Command::new("node").arg("--max-old-space-size=16000").arg(&memlab_script).arg(&snapshot).env("NODE_PATH", &modules));
        println!("memlab run {}: {:.2} s wall, peak RssAnon {:.0} MiB", i + 1, run.seconds, run.peak_anon_mib);
        memlab_runs.push(run);
    }
    let mut ours = Vec::new();
    for i in 0..runs("LEAKSCOPE_RUNS", 7) {
        let run = measure(Command::new(end2end::leakscope_bin()).args(["analyze", "--json"]).arg(&snapshot));
        println!("leakscope run {}: {:.2} s wall, peak RssAnon {:.0} MiB", i + 1, run.seconds, run.peak_anon_mib);
        ours.push(run);
    }
    let memlab_s = median(memlab_runs.iter().map(|r| r.seconds).collect());
    let ours_s = median(ours.iter().map(|r| r.seconds).collect());
    let memlab_peak = median(memlab_runs.iter().map(|r| r.peak_anon_mib).collect());
    let ours_peak = ours.iter().map(|r| r.peak_anon_mib).fold(0.0, f64::max);
    println!(
        "median wall: memlab getFullHeapFromFile {memlab_s:.2} s, leakscope analyze {ours_s:.2} s: {:.1}x faster; \
         peak RssAnon: memlab {memlab_peak:.0} MiB, leakscope {ours_peak:.0} MiB (file {size_mib:.0} MiB)",
        memlab_s / ours_s
    );

    // The biggest retainers memlab lists, against ours by object id (the two
    // synthetic roots are roots here, so they have no retained size to compare).
    let theirs: serde_json::Value = serde_json::from_str(memlab_runs[0].stdout.trim()).expect("memlab's JSON");
    let analysis: serde_json::Value = serde_json::from_str(&ours[0].stdout).expect("leakscope's JSON");
    let our_sizes: std::collections::HashMap<u64, u64> = analysis["dominators"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((u64::from_str_radix(d["object_id"].as_str()?.trim_start_matches("0x"), 16).ok()?, d["retained_bytes"].as_u64()?)))
        .collect();
    let (mut compared, mut equal) = (0, 0);
    for entry in theirs["top"].as_array().into_iter().flatten() {
        let (Some(size), Some(id)) = (entry[0].as_u64(), entry[1].as_u64()) else { continue };
        if let Some(&ours) = our_sizes.get(&id) {
            compared += 1;
            if ours == size {
                equal += 1;
            } else {
                println!("  object {id} ({}): memlab {size}, leakscope {ours}", entry[2]);
            }
        }
    }
    println!("retained sizes of the biggest retainers both list: {equal} of {compared} identical");
}
