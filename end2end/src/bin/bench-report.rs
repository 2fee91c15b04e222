//! Time to first byte of a report page: a 7-day window (a week of minute
//! samples written into the store first, so the frozen series is full) with
//! two analysed heap dumps. Prints the median and p95 of 200 requests.
//!
//! `cargo run --release -p end2end --bin bench-report`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use end2end::{Server, TestContainer};

const MINUTES: i64 = 7 * 24 * 60;

fn main() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("bench-report", &["-m", "512m"], &["sleep", "3600"]);
    server.wait_until(Duration::from_secs(30), "listed", || server.listed(&c.name).is_some());

    // A week of history under the container's name (a slow leak with a sawtooth).
    end2end::seed_history(&server, &c.name, MINUTES);
    let dumps = end2end::upload_analysed_dumps(&server, &c.name, &[5_000, 40_000]);
    let (id, url) = end2end::create_report(&server, &c.name, MINUTES * 60, &dumps);
    let (_, report) = server.get_json(&format!("/api/v1/reports/{id}"));
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
