//! Native and Go figures, side by side in one run:
//!
//! 1. A memory-map snapshot and a core dump of a 1 GiB process: the C fixture
//!    (`FROM scratch`, so our helper works from a helper container beside it)
//!    allocates 1.1 GiB and then holds it; each is captured through the API —
//!    click to stored dump — with the pause it records (a memory map stops
//!    nothing), and the core beside gdb's `gcore` of the same process on the
//!    host (which stops it for the whole of its run).
//! 2. A 50 MB Go heap profile, analysed by `leakscope analyze` and by
//!    `go tool pprof -top` (Debian's Go) on the same file: seconds and peak
//!    RssAnon, medians of 3. A real Go program does not write a 50 MB heap
//!    profile (its sampling keeps profiles small), so this one is generated:
//!    deep, varied call stacks over thousands of functions, in the format Go writes.
//!
//! Run: cargo run --release -p end2end --bin bench-native -- [profile MB, default 50]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use end2end::{fixture_image, Server, TestContainer};
use leakscope_heap::formats::pprof::{Function, Line, Location, Profile, Sample, ValueType};
use prost::Message;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A small deterministic generator (the profile is the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

/// A heap profile of about `megabytes` MB: 5 000 functions in 200 packages,
/// stacks 10 to 40 frames deep that share their outer frames as real programs do.
fn big_profile(megabytes: u64) -> Vec<u8> {
    let mut strings = vec![String::new()];
    let mut intern = |s: String| {
        strings.push(s);
        (strings.len() - 1) as i64
    };
    let sample_type = ["alloc_objects", "count", "alloc_space", "bytes", "inuse_objects", "count", "inuse_space", "bytes"]
        .chunks(2)
        .map(|p| ValueType { r#type: intern(p[0].into()), unit: intern(p[1].into()) })
        .collect::<Vec<_>>();
    let functions: Vec<Function> = (0..5000u64)
        .map(|i| Function { id: i + 1, name: intern(format!("example.com/pkg{}.Func{i}", i % 200)), filename: intern(format!("pkg{}/file{}.go", i % 200, i % 7)) })
        .collect();
    let locations: Vec<Location> = (0..5000u64).map(|i| Location { id: i + 1, line: vec![Line { function_id: i + 1, line: (i % 300) as i64 + 1 }] }).collect();
    let mut rng = Lcg(42);
    let mut samples = Vec::new();
    let mut size = 0u64;
    // Outer frames from a few hundred entry paths, inner frames varied.
    let entries: Vec<Vec<u64>> = (0..300).map(|_| (0..8).map(|_| rng.next(5000) + 1).collect()).collect();
    while size < megabytes * 1_000_000 {
        let mut stack: Vec<u64> = (0..rng.next(30) + 2).map(|_| rng.next(5000) + 1).collect();
        stack.extend(entries[rng.next(300) as usize].iter().rev());
        let objects = rng.next(1000) as i64 + 1;
        let bytes = objects * (16 << rng.next(8)) as i64;
        let inuse = if rng.next(3) == 0 { 0 } else { objects / 2 + 1 };
        let value = vec![objects, bytes, inuse, inuse * (bytes / objects)];
        size += stack.len() as u64 * 2 + 18;
        samples.push(Sample { location_id: stack, value });
    }
    let profile = Profile { sample_type, sample: samples, location: locations, function: functions, string_table: strings, time_nanos: 1_700_000_000_000_000_000, default_sample_type: 0 };
    profile.encode_to_vec()
}

fn memory_map_and_core_of_a_big_process(out_dir: &Path) {
    let server = Server::start(&[], &[]);
    // One batch of 20 s at 60 MB/s, all of it kept, then a long rest: 1.1 GiB held still.
    let env = ["MODE=batch", "LEAK_KIB_PER_SEC=60000", "BATCH_SECS=20", "KEEP_PERCENT=100", "REST_SECS=3600"];
    let mut args = vec!["-m", "2g"];
    for e in &env {
        args.extend(["-e", e]);
    }
    let native = TestContainer::run_image("bench-mmap", &fixture_image("native"), &args, &[]);
    let started = Instant::now();
    while end2end::docker_stats_working_set(&native.name) < 1 << 30 || started.elapsed() < Duration::from_secs(22) {
        assert!(started.elapsed() < Duration::from_secs(90), "the fixture never reached 1 GiB");
        std::thread::sleep(Duration::from_millis(200));
    }
    let clicked = Instant::now();
    let state = server.wait_job(&server.capture_job(&native.name, "{\"kind\": \"memory-map\"}"));
    let click_to_stored = clicked.elapsed().as_secs_f64();
    assert_eq!(state["state"], "done", "{state}");
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{}", state["dump_id"].as_str().unwrap()));
    let analysis = server.wait_analysis(state["dump_id"].as_str().unwrap());
    println!(
        "memory map of a {:.2} GiB process (C, scratch image, helper container): click to stored {click_to_stored:.2} s, process paused {} ms, snapshot {} KiB, resident {:.2} GiB",
        end2end::docker_stats_working_set(&native.name) as f64 / (1u64 << 30) as f64,
        info["pause_ms"],
        info["size_bytes"].as_u64().unwrap_or(0) / 1024,
        analysis["summary"]["reachable_bytes"].as_u64().unwrap_or(0) as f64 / (1u64 << 30) as f64
    );

    let clicked = Instant::now();
    let state = server.wait_job(&server.capture_job(&native.name, "{\"kind\": \"core\"}"));
    let click_to_stored = clicked.elapsed().as_secs_f64();
    assert_eq!(state["state"], "done", "{state}");
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{}", state["dump_id"].as_str().unwrap()));
    println!(
        "core dump of the same process (helper container, ptrace): click to stored {click_to_stored:.2} s, every thread stopped {} ms, core {:.2} GiB stored as {:.0} MiB (zstd)",
        info["pause_ms"],
        info["size_bytes"].as_u64().unwrap_or(0) as f64 / (1u64 << 30) as f64,
        info["stored_bytes"].as_u64().unwrap_or(0) as f64 / (1u64 << 20) as f64
    );
    // The peer: gdb's gcore on the host, on the same process (stopped from attach to detach).
    let pid = end2end::docker(&["inspect", "-f", "{{.State.Pid}}", &native.name]).trim().to_string();
    let prefix = out_dir.join("gcore");
    let timed = Instant::now();
    let gcore = Command::new("gcore").arg("-o").arg(&prefix).arg(&pid).output().expect("gdb is installed (apt-get install gdb)");
    let seconds = timed.elapsed().as_secs_f64();
    let written = out_dir.join(format!("gcore.{pid}"));
    let size = std::fs::metadata(&written).map(|m| m.len()).unwrap_or(0);
    std::fs::remove_file(&written).ok();
    assert!(gcore.status.success(), "{}", String::from_utf8_lossy(&gcore.stderr));
    println!(
        "gcore (gdb 13, on the host, same process): {seconds:.2} s, process stopped for all of it, core {:.2} GiB uncompressed on disk",
        size as f64 / (1u64 << 30) as f64
    );
}

fn main() {
    let megabytes: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = out_dir.join("big-heap.pb");
    std::fs::write(&file, big_profile(megabytes)).unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    let binary = end2end::leakscope_bin();
    // The pprof tool itself (`go tool` would start it as a child, out of the RssAnon sampling's sight).
    let tooldir = Command::new("go").args(["env", "GOTOOLDIR"]).output().expect("Go is installed (apt-get install golang-go)");
    let pprof = Path::new(String::from_utf8_lossy(&tooldir.stdout).trim()).join("pprof");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        ours.push(end2end::load::measure(Command::new(&binary).arg("analyze").arg(&file)));
        theirs.push(end2end::load::measure(Command::new(&pprof).args(["-top", "-unit=B", "-sample_index=inuse_space"]).arg(&file)));
    }
    let (ours_s, ours_mib) = (median(ours.iter().map(|r| r.0).collect()), median(ours.iter().map(|r| r.1).collect()));
    let (theirs_s, theirs_mib) = (median(theirs.iter().map(|r| r.0).collect()), median(theirs.iter().map(|r| r.1).collect()));
    println!("Go heap profile of {:.1} MB ({}):", size as f64 / 1e6, file.display());
    println!("  leakscope analyze:   {ours_s:.2} s, peak RssAnon {ours_mib:.0} MiB (histogram, call tree, allocation sites)");
    println!("  go tool pprof -top:  {theirs_s:.2} s, peak RssAnon {theirs_mib:.0} MiB");
    memory_map_and_core_of_a_big_process(&out_dir);
}
