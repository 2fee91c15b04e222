//! Time to first byte of a report page: a 7-day window (a week of minute
//! samples written into the store first, so the frozen series is full) with
//! two analysed heap dumps. Prints the median and p95 of 200 requests.
//!
//! `cargo run --release -p end2end --bin bench-report`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use end2end::{docker, Server, TestContainer};
use leakscope_engine::memory::MemoryReading;
use leakscope_engine::store::{SampleRow, Store};

const MINUTES: i64 = 7 * 24 * 60;

fn main() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("bench-report", &["-m", "512m"], &["sleep", "3600"]);
    server.wait_until(Duration::from_secs(30), "listed", || server.listed(&c.name).is_some());

    // A week of history under the container's name (a slow leak with a sawtooth).
    let id = docker(&["inspect", "-f", "{{.Id}}", &c.name]).trim().to_string();
    let mut store = Store::open(&server.data_dir.join("leakscope.db")).unwrap();
    let now = leakscope_engine::now_ms();
    let record = store.find_container(&id).unwrap().expect("the sampler stored the container").1;
    let key = store.upsert_container(&record, now).unwrap();
    let start = now - MINUTES * 60_000;
    for chunk in (0..MINUTES).collect::<Vec<_>>().chunks(1440) {
        let rows: Vec<SampleRow> = chunk
            .iter()
            .map(|m| {
                let ws = 100_000_000 + (*m as u64) * 20_000 + (*m as u64 % 7) * 3_000_000;
                SampleRow {
                    container_key: key,
                    time_ms: start + m * 60_000,
                    reading: MemoryReading { usage: ws + 1_000_000, working_set: ws, rss: ws, cache: 1_000_000 },
                    limit_bytes: Some(512 << 20),
                }
            })
            .collect();
        let tick = rows.last().unwrap().time_ms + 60_000;
        store.write_tick(&rows, tick).unwrap();
    }

    let mut dumps = Vec::new();
    for (i, sessions) in [5_000, 40_000].into_iter().enumerate() {
        let bytes = std::fs::read(end2end::java_heap_dump(sessions, 200)).unwrap();
        let (status, body) = server.post_bytes(&format!("/api/v1/dumps?name=b{i}.hprof&container={}", c.name), &bytes);
        assert_eq!(status, 201, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
        server.wait_until(Duration::from_secs(120), "analysed", || server.get(&format!("/api/v1/dumps/{id}/analysis")).0 == 200);
        dumps.push(id);
    }
    let to = chrono_now_rfc3339(0);
    let from = chrono_now_rfc3339(MINUTES * 60);
    let body = serde_json::json!({ "container": c.name, "from": from, "to": to, "dumps": dumps, "title": "bench" });
    let (status, answer) = end2end::answer(
        server.request("POST", "/api/v1/reports").set("Content-Type", "application/json").send_string(&body.to_string()),
        "create report",
    );
    assert_eq!(status, 201, "{answer}");
    let url = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["url"].as_str().unwrap().to_string();
    let (_, report) = server.get_json(&format!("/api/v1/reports/{}", url.trim_start_matches("/reports/")));
    println!("report: {} points, {} events, {} dumps, diff {}", report["series"].as_array().unwrap().len(),
        report["events"].as_array().unwrap().len(), report["dumps"].as_array().unwrap().len(), !report["diff"].is_null());

    let address = server.base.trim_start_matches("http://").to_string();
    let mut ttfb = Vec::new();
    let mut size = 0;
    for _ in 0..200 {
        let mut stream = TcpStream::connect(&address).unwrap();
        let request = format!("GET {url} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", server.token);
        let sent = Instant::now();
        stream.write_all(request.as_bytes()).unwrap();
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).unwrap();
        ttfb.push(sent.elapsed().as_secs_f64() * 1000.0);
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        size = rest.len() + 1;
    }
    ttfb.sort_by(f64::total_cmp);
    println!("report page {size} bytes; time to first byte over 200 requests: median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        ttfb[100], ttfb[190], ttfb[199]);
}

fn chrono_now_rfc3339(seconds_ago: i64) -> String {
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{}", leakscope_engine::now_ms() / 1000 - seconds_ago), "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
