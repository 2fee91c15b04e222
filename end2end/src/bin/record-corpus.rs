//! Records the `recorded` part of the detector's corpus: sample services at
//! several leak rates (0.2 to 20 MiB/min), steady and warming-up services and
//! an OOM restart loop, batch jobs that free what they took (with and without
//! a leak under the cycle) and services restarted by `docker restart` on a
//! timer, sampled by a `leakscope serve` every 2 s. Restarts go into the CSVs'
//! `started_at` column, from the engine's own events.
//!
//!   cargo run --release -p end2end --bin record-corpus -- start [NAME...]  # starts the services (all, or those named) and a server on :3998
//!   cargo run --release -p end2end --bin record-corpus -- export [URL]     # after an hour or more: writes the CSVs of the running ones
//!   cargo run --release -p end2end --bin record-corpus -- stop
//!
//! `export` writes `crates/detect/corpus/recorded-*.csv` and replaces the
//! recorded rows of `labels.csv`.

use std::path::Path;
use std::process::{Command, Stdio};

use end2end::{docker, fixture_image, leakscope_bin};

const LABEL: &str = "io.leakscope.corpus=true";

/// name, image, leak?, kind, description, docker options (then, after `--`, a command instead of the image's).
const SERVICES: &[(&str, &str, bool, &str, &str, &[&str])] = &[
    ("java-leak-1mpm", "java", true, "leak", "java-leak at 1 MiB/min", &["-m", "512m", "-e", "LEAK_KIB_PER_SEC=17"]),
    ("java-leak-5mpm", "java", true, "leak", "java-leak at 5 MiB/min", &["-m", "768m", "-e", "LEAK_KIB_PER_SEC=85"]),
    ("node-leak-20mpm", "node", true, "leak", "node-leak at 20 MiB/min", &["-m", "2g", "-e", "LEAK_KIB_PER_SEC=341", "-e", "OBJECT_BYTES=16384"]),
    ("python-leak-0.2mpm", "python", true, "leak", "python-leak at 0.2 MiB/min", &["-m", "256m", "-e", "LEAK_KIB_PER_SEC=3.4"]),
    ("native-leak-2mpm", "native", true, "leak", "native-leak at 2 MiB/min", &["-m", "512m", "-e", "LEAK_KIB_PER_SEC=34"]),
    ("java-steady", "java", false, "steady", "java-steady, 20 MiB/s of garbage", &["-m", "256m", "-e", "MODE=steady", "-e", "GARBAGE_MIB_PER_SEC=20"]),
    ("java-warmup", "java", false, "warm-up", "java-warmup, 64 MiB cache at 10 MiB/min", &["-m", "256m", "-e", "MODE=warmup", "-e", "CACHE_MIB=64", "-e", "LEAK_KIB_PER_SEC=170"]),
    ("java-warmup-slow", "java", false, "warm-up", "java-warmup, 48 MiB cache at 2.3 MiB/min", &["-m", "256m", "-e", "MODE=warmup", "-e", "CACHE_MIB=48", "-e", "LEAK_KIB_PER_SEC=40"]),
    ("java-leak-20mpm", "java", true, "leak", "java-leak at 20 MiB/min in 16 KiB sessions", &["-m", "1g", "-e", "LEAK_KIB_PER_SEC=341", "-e", "OBJECT_BYTES=16384"]),
    ("native-batch", "native", false, "batch cycle", "batch job: climbs 23 MiB/min for 9 min, frees it all, rests 2 min (from minute 7)", &["-m", "1g", "-e", "MODE=batch", "-e", "LEAK_KIB_PER_SEC=400", "-e", "BATCH_SECS=540", "-e", "REST_SECS=120"]),
    ("native-batch-leak", "native", true, "leak under a cycle", "batch job that keeps 15 % of every batch: the floor after each rises 32 MiB (from minute 7)", &["-m", "1g", "-e", "MODE=batch", "-e", "LEAK_KIB_PER_SEC=400", "-e", "BATCH_SECS=540", "-e", "REST_SECS=120", "-e", "KEEP_PERCENT=15"]),
    ("native-leak-restarted", "native", true, "leak restarted on a timer", "native-leak at 6 MiB/min, docker restart every 16 min (before it reaches its limit)", &["-m", "1g", "-e", "LEAK_KIB_PER_SEC=100"]),
    ("java-warmup-restarted", "java", false, "restart loop (no leak)", "java-warmup (64 MiB cache at 10 MiB/min), docker restart every 16 min", &["-m", "512m", "-e", "MODE=warmup", "-e", "CACHE_MIB=64", "-e", "LEAK_KIB_PER_SEC=170"]),
    ("java-oldgen", "java", false, "steady", "java-oldgen: ParallelGC, 2-minute sessions at 5 MiB/min die in the old generation; its collections keep the heap near the live set, so memory is flat after warm-up", &["-m", "512m", "-e", "MODE=oldgen", "-e", "LEAK_KIB_PER_SEC=85", "-e", "SESSION_SECS=120", "--", "java", "-XX:+UseParallelGC", "-Xmx384m", "-Xmn32m", "-XX:MaxTenuringThreshold=1", "-cp", "/app/leak-service.jar", "LeakService"]),
    ("native-oom-loop", "native", true, "restart loop (leak)", "native-leak at 30 MiB/min under 64 MiB, restarted after every OOM kill", &["-m", "64m", "--memory-swap", "64m", "--restart", "always", "-e", "LEAK_KIB_PER_SEC=512"]),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("start") => start(&args[1..]),
        Some("export") => export(args.get(1).map(String::as_str).unwrap_or("http://127.0.0.1:3998")),
        Some("stop") => stop(),
        _ => eprintln!("usage: record-corpus start | export [URL] | stop"),
    }
}

fn start(only: &[String]) {
    stop();
    for (name, image, _, _, _, options) in SERVICES.iter().filter(|s| only.is_empty() || only.iter().any(|o| o == s.0)) {
        let name = format!("rec-{name}");
        let image = fixture_image(image);
        let mut argv = vec!["run", "-d", "--name", name.as_str(), "--label", LABEL];
        let (options, command) = options.split_at(options.iter().position(|o| *o == "--").unwrap_or(options.len()));
        argv.extend_from_slice(options);
        argv.push(&image);
        argv.extend_from_slice(command.get(1..).unwrap_or_default());
        docker(&argv);
    }
    let data = std::env::temp_dir().join("leakscope-corpus-recording");
    std::fs::create_dir_all(&data).unwrap();
    // `export` reads the API with this token.
    std::fs::write(data.join("export-token"), end2end::create_token(&data, "viewer", "corpus-export")).unwrap();
    Command::new(leakscope_bin())
        .args(["serve", "--bind", "127.0.0.1:3998", "--interval", "2s", "--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start leakscope serve");
    // The services restarted on a timer, by the engine as `docker restart` would.
    let restarted: Vec<String> =
        SERVICES.iter().filter(|s| s.0.ends_with("-restarted") && (only.is_empty() || only.iter().any(|o| o == s.0))).map(|s| format!("rec-{}", s.0)).collect();
    let timer = Command::new("sh")
        .args(["-c", "while sleep 960; do docker restart \"$@\" >/dev/null; done", "restart-timer"])
        .args(&restarted)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the restart timer");
    std::fs::write(data.join("restart-timer.pid"), timer.id().to_string()).unwrap();
    println!("recording {} services on http://127.0.0.1:3998 (data in {})", SERVICES.len(), data.display());
}

fn stop() {
    let pid_file = std::env::temp_dir().join("leakscope-corpus-recording/restart-timer.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
        let _ = std::fs::remove_file(pid_file);
    }
    end2end::remove_labelled(LABEL);
}

fn export(base: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/detect/corpus");
    let mut rows = Vec::new();
    for (name, _, leak, kind, description, options) in SERVICES {
        let url = format!("{base}/api/v1/containers/rec-{name}/memory?range=24h&step=2");
        let token = std::fs::read_to_string(std::env::temp_dir().join("leakscope-corpus-recording/export-token")).unwrap_or_default();
        // Services not recorded this time keep their earlier CSV and label row.
        let Ok(response) = ureq::get(&url).set("Authorization", &format!("Bearer {token}")).call() else { continue };
        let series: serde_json::Value = response.into_json().unwrap();
        let points = series["points"].as_array().cloned().unwrap_or_default();
        // Each sample's process start, from the engine's `start` events.
        let events: serde_json::Value = ureq::get(&format!("{base}/api/v1/containers/rec-{name}/events?range=24h"))
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("the recording server answers")
            .into_json()
            .unwrap();
        let mut starts: Vec<i64> =
            events.as_array().into_iter().flatten().filter(|e| e["action"] == "start").filter_map(|e| e["time_ms"].as_i64()).map(|t| t / 1000).collect();
        starts.sort_unstable();
        let mut csv = String::from("timestamp,working_set_bytes,limit_bytes,started_at\n");
        // Cycles are kept from minute 7, just before the first batch ends: the
        // first climb, seen from the process's start, cannot be told from a leak
        // by anyone (as for the synthetic cycles, observed from before a drop).
        let first = points.first().and_then(|p| p["time_ms"].as_i64()).unwrap_or(0) / 1000;
        let from = if kind.contains("cycle") { first + 420 } else { first };
        for p in points.iter().filter(|p| p["time_ms"].as_i64().unwrap_or(0) / 1000 >= from) {
            let limit = p["limit_bytes"].as_u64().map(|l| l.to_string()).unwrap_or_default();
            let t = p["time_ms"].as_i64().unwrap() / 1000;
            let started = starts.iter().rev().find(|s| **s <= t).map(|s| s.to_string()).unwrap_or_default();
            csv.push_str(&format!("{t},{},{limit},{started}\n", p["working_set_bytes"].as_u64().unwrap()));
        }
        let file = format!("recorded-{name}.csv");
        std::fs::write(dir.join(&file), csv).unwrap();
        let label = if *leak { "leak" } else { "no-leak" };
        let rate = if *leak { format!("{:.2}", leak_rate_mib_per_min(options)) } else { String::new() };
        rows.push((file.clone(), format!("{file},{label},{kind},recorded,0,\"{description}\",{rate}")));
        println!("{file}: {} samples", points.len());
    }
    let labels_path = dir.join("labels.csv");
    let old = std::fs::read_to_string(&labels_path).unwrap_or_default();
    let mut labels = String::from("file,label,kind,source,onset_seconds,description,rate_mib_per_min\n");
    for line in old.lines().skip(1).filter(|l| l.starts_with("recorded-") && !rows.iter().any(|(file, _)| l.starts_with(&format!("{file},")))) {
        labels.push_str(line);
        labels.push('\n');
    }
    for (_, row) in rows {
        labels.push_str(&row);
        labels.push('\n');
    }
    for line in old.lines().skip(1).filter(|l| !l.starts_with("recorded-")) {
        labels.push_str(line);
        labels.push('\n');
    }
    std::fs::write(&labels_path, labels).unwrap();
}

/// The configured leak rate of a service, from its environment (a batch job
/// keeps KEEP_PERCENT of what it takes while it runs).
fn leak_rate_mib_per_min(options: &[&str]) -> f64 {
    let env = |name: &str, default: f64| {
        options.iter().find_map(|o| o.strip_prefix(&format!("{name}="))).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let rate = env("LEAK_KIB_PER_SEC", 170.0) * 60.0 / 1024.0;
    if options.contains(&"MODE=batch") {
        let (batch, rest) = (env("BATCH_SECS", 600.0), env("REST_SECS", 120.0));
        rate * env("KEEP_PERCENT", 0.0) / 100.0 * batch / (batch + rest)
    } else {
        rate
    }
}
