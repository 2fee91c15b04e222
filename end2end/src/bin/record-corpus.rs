//! Records the `recorded` part of the detector's corpus: sample services at
//! several leak rates (0.2 to 20 MiB/min), steady and warming-up services and
//! an OOM restart loop, sampled by a `leakscope serve` every 2 s.
//!
//!   cargo run --release -p end2end --bin record-corpus -- start            # starts the services and a server on :3998
//!   cargo run --release -p end2end --bin record-corpus -- export [URL]     # after an hour or more: writes the CSVs
//!   cargo run --release -p end2end --bin record-corpus -- stop
//!
//! `export` writes `crates/detect/corpus/recorded-*.csv` and replaces the
//! recorded rows of `labels.csv`.

use std::path::Path;
use std::process::{Command, Stdio};

use end2end::{docker, fixture_image, leakscope_bin};

const LABEL: &str = "io.leakscope.corpus=true";

/// name, image, leak?, kind, description, docker options.
const SERVICES: &[(&str, &str, bool, &str, &str, &[&str])] = &[
    ("java-leak-1mpm", "java", true, "leak", "java-leak at 1 MiB/min", &["-m", "512m", "-e", "LEAK_KIB_PER_SEC=17"]),
    ("java-leak-5mpm", "java", true, "leak", "java-leak at 5 MiB/min", &["-m", "768m", "-e", "LEAK_KIB_PER_SEC=85"]),
    ("node-leak-20mpm", "node", true, "leak", "node-leak at 20 MiB/min", &["-m", "2g", "-e", "LEAK_KIB_PER_SEC=341", "-e", "OBJECT_BYTES=16384"]),
    ("python-leak-0.2mpm", "python", true, "leak", "python-leak at 0.2 MiB/min", &["-m", "256m", "-e", "LEAK_KIB_PER_SEC=3.4"]),
    ("native-leak-2mpm", "native", true, "leak", "native-leak at 2 MiB/min", &["-m", "512m", "-e", "LEAK_KIB_PER_SEC=34"]),
    ("java-steady", "java", false, "steady", "java-steady, 20 MiB/s of garbage", &["-m", "256m", "-e", "MODE=steady", "-e", "GARBAGE_MIB_PER_SEC=20"]),
    ("java-warmup", "java", false, "warm-up", "java-warmup, 64 MiB cache at 10 MiB/min", &["-m", "256m", "-e", "MODE=warmup", "-e", "CACHE_MIB=64", "-e", "LEAK_KIB_PER_SEC=170"]),
    ("java-warmup-slow", "java", false, "warm-up", "java-warmup, 48 MiB cache at 2.3 MiB/min", &["-m", "256m", "-e", "MODE=warmup", "-e", "CACHE_MIB=48", "-e", "LEAK_KIB_PER_SEC=40"]),
    ("native-oom-loop", "native", true, "restart loop (leak)", "native-leak at 30 MiB/min under 64 MiB, restarted after every OOM kill", &["-m", "64m", "--memory-swap", "64m", "--restart", "always", "-e", "LEAK_KIB_PER_SEC=512"]),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("start") => start(),
        Some("export") => export(args.get(1).map(String::as_str).unwrap_or("http://127.0.0.1:3998")),
        Some("stop") => stop(),
        _ => eprintln!("usage: record-corpus start | export [URL] | stop"),
    }
}

fn start() {
    stop();
    for (name, image, _, _, _, options) in SERVICES {
        let name = format!("rec-{name}");
        let image = fixture_image(image);
        let mut argv = vec!["run", "-d", "--name", name.as_str(), "--label", LABEL];
        argv.extend_from_slice(options);
        argv.push(&image);
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
    println!("recording {} services on http://127.0.0.1:3998 (data in {})", SERVICES.len(), data.display());
}

fn stop() {
    end2end::remove_labelled(LABEL);
}

fn export(base: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/detect/corpus");
    let mut rows = Vec::new();
    for (name, _, leak, kind, description, _) in SERVICES {
        let url = format!("{base}/api/v1/containers/rec-{name}/memory?range=24h&step=2");
        let token = std::fs::read_to_string(std::env::temp_dir().join("leakscope-corpus-recording/export-token")).unwrap_or_default();
        let series: serde_json::Value = ureq::get(&url).set("Authorization", &format!("Bearer {token}")).call().expect("the recording server answers").into_json().unwrap();
        let points = series["points"].as_array().cloned().unwrap_or_default();
        let mut csv = String::from("timestamp,working_set_bytes,limit_bytes\n");
        for p in &points {
            let limit = p["limit_bytes"].as_u64().map(|l| l.to_string()).unwrap_or_default();
            csv.push_str(&format!("{},{},{limit}\n", p["time_ms"].as_i64().unwrap() / 1000, p["working_set_bytes"].as_u64().unwrap()));
        }
        let file = format!("recorded-{name}.csv");
        std::fs::write(dir.join(&file), csv).unwrap();
        let label = if *leak { "leak" } else { "no-leak" };
        rows.push(format!("{file},{label},{kind},recorded,0,\"{description}\""));
        println!("{file}: {} samples", points.len());
    }
    let labels_path = dir.join("labels.csv");
    let old = std::fs::read_to_string(&labels_path).unwrap_or_default();
    let mut labels = String::from("file,label,kind,source,onset_seconds,description\n");
    for row in rows {
        labels.push_str(&row);
        labels.push('\n');
    }
    for line in old.lines().skip(1).filter(|l| !l.starts_with("recorded-")) {
        labels.push_str(line);
        labels.push('\n');
    }
    std::fs::write(&labels_path, labels).unwrap();
}
