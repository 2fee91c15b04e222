//! Python heap snapshots against guppy3, side by side in one run, on the same
//! program (`fixtures/bench/big-python-heap.py`, about 2 M objects):
//!
//! 1. On the host, in one interpreter each: guppy3's `hpy().heap()` and
//!    Leakscope's walk (the code the helper runs inside a target) over the same
//!    heap; both hold the interpreter while they walk, so the time is the pause.
//! 2. In a container (the python fixture image, Debian's python3.11): a capture
//!    through the API — click to stored dump, and the pause the record keeps.
//! 3. The analysis of the host walk's snapshot: seconds and peak RssAnon of
//!    `leakscope analyze`, beside the snapshot's size.
//!
//! guppy3 is pip-installed, pinned, into its own virtualenv for this benchmark only.
//!
//! Run: cargo run --release -p end2end --bin bench-python -- [records, default 300000]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{fixture_image, Server, TestContainer};
use serde_json::Value;

const GUPPY3_VERSION: &str = "3.1.7";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Debian's python3.11, the interpreter of the fixture image too.
fn python() -> &'static str {
    "/usr/bin/python3"
}

fn guppy_venv() -> PathBuf {
    let cache = std::env::var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
    let venv = cache.join(format!("leakscope/guppy3-{GUPPY3_VERSION}"));
    let venv_python = venv.join("bin/python");
    let has = Command::new(&venv_python).args(["-c", "import guppy"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !has {
        eprintln!("installing guppy3 {GUPPY3_VERSION} (PyPI) into {}", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        assert!(Command::new(python()).args(["-m", "venv"]).arg(&venv).status().unwrap().success(), "python3 -m venv (python3-venv)");
        let pip = venv.join("bin/pip");
        let spec = format!("guppy3=={GUPPY3_VERSION}");
        assert!(Command::new(pip).args(["install", "-q", "--disable-pip-version-check", &spec]).status().unwrap().success());
    }
    venv_python
}

fn run_json(command: &mut Command) -> Value {
    let out = command.stderr(Stdio::inherit()).output().expect("runs");
    assert!(out.status.success(), "{command:?} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn seconds(v: &Value) -> f64 {
    median(v["seconds"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect())
}

fn main() {
    let records: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let program = root.join("end2end/fixtures/bench/big-python-heap.py");
    let walk = root.join("crates/agent/src/python/walk.py");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let snapshot = out_dir.join("big.pyheap");
    let records_arg = records.to_string();

    // 1. guppy3 and our walk on the host, the same heap.
    let guppy = run_json(Command::new(guppy_venv()).arg(&program).args([&records_arg, "guppy", "3"]));
    let ours = run_json(Command::new(python()).arg(&program).args([&records_arg, "walk", "3"]).arg(&walk).arg(&snapshot));
    let objects = guppy["objects"].as_u64().unwrap_or(0);
    let snapshot_mib = std::fs::metadata(&snapshot).unwrap().len() as f64 / (1 << 20) as f64;

    // 2. A capture through the API from a container.
    let server = Server::start(&[], &[]);
    let mount = format!("{}:/app/big.py:ro", program.display());
    let target = TestContainer::run_image("bench-python", &fixture_image("python"), &["-v", &mount, "-m", "4g"], &["python3", "/app/big.py", &records_arg, "serve"]);
    let started = Instant::now();
    loop {
        let logs = Command::new("docker").args(["logs", &target.name]).output().unwrap();
        if String::from_utf8_lossy(&logs.stdout).contains("built") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the program did not build its heap");
        std::thread::sleep(Duration::from_millis(200));
    }
    let clicked = Instant::now();
    let job = server.wait_job(&server.capture_job(&target.name, ""));
    let click_to_stored = clicked.elapsed().as_secs_f64();
    assert_eq!(job["state"], "done", "{job}");
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{}", job["dump_id"].as_str().unwrap()));

    // 3. Analysis of the host walk's snapshot.
    let binary = std::env::var("LEAKSCOPE_BIN").map(PathBuf::from).unwrap_or_else(|_| root.join("target/release/leakscope"));
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(end2end::load::measure(Command::new(&binary).arg("analyze").arg(&snapshot)));
    }
    let analysis_seconds = median(runs.iter().map(|r| r.0).collect());
    let analysis_peak = runs.iter().map(|r| r.1).fold(0.0, f64::max);

    println!("Python heap of {objects} objects ({records} records), Debian's CPython 3.11, one run:");
    println!("  walk on the host (median of 3), the interpreter held all along:");
    println!("    guppy3 {GUPPY3_VERSION} hpy().heap()            {:.2} s  (classifies objects; no references)", seconds(&guppy));
    println!("    Leakscope's walk into a snapshot    {:.2} s  ({snapshot_mib:.0} MiB: every object and named reference)", seconds(&ours));
    println!("  capture through the API from a container (click to stored dump): {click_to_stored:.2} s; pause of the target {} ms; {} MiB stored as {} MiB",
        info["pause_ms"], info["size_bytes"].as_u64().unwrap_or(0) >> 20, info["stored_bytes"].as_u64().unwrap_or(0) >> 20);
    println!("  analysis of the snapshot (leakscope analyze, median of 5): {analysis_seconds:.2} s, peak RssAnon {analysis_peak:.0} MiB (snapshot {snapshot_mib:.0} MiB)");
}
