//! A bounded load generator for the tests and the soak benchmark: N threads,
//! each with its own keep-alive connection, hitting one URL for a fixed time
//! and recording every latency and every failure. Loopback only: the URL is
//! always a test server's.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// What one route did under load.
#[derive(Debug, Clone)]
pub struct RouteLoad {
    pub path: String,
    pub requests: u64,
    pub failures: u64,
    /// The first few failures, in words (status and body start, or the transport error).
    pub failure_samples: Vec<String>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub bytes: u64,
}

impl RouteLoad {
    pub fn line(&self) -> String {
        format!(
            "{:<58} {:>6} req {:>3} err  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  {:>7} KiB/req",
            self.path,
            self.requests,
            self.failures,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.bytes / self.requests.max(1) / 1024
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `concurrency` clients GET `base + path` back to back for `duration`; a
/// request fails unless it answers `expect` with a non-empty body.
pub fn hammer(base: &str, path: &str, bearer: Option<&str>, expect: u16, concurrency: usize, duration: Duration) -> RouteLoad {
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let failures = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
    let bytes = Arc::new(Mutex::new(0u64));
    let barrier = Arc::new(Barrier::new(concurrency));
    let url = format!("{base}{path}");
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (latencies, failures, bytes, barrier) = (latencies.clone(), failures.clone(), bytes.clone(), barrier.clone());
            let url = url.clone();
            let bearer = bearer.map(str::to_string);
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
                let mut mine = Vec::new();
                let mut my_bytes = 0u64;
                barrier.wait();
                let end = Instant::now() + duration;
                while Instant::now() < end {
                    let t = Instant::now();
                    let mut request = agent.get(&url);
                    if let Some(b) = &bearer {
                        request = request.set("Authorization", &format!("Bearer {b}"));
                    }
                    let outcome = match request.call() {
                        Ok(r) => (r.status(), r.into_string().map_err(|e| e.to_string())),
                        Err(ureq::Error::Status(code, r)) => (code, r.into_string().map_err(|e| e.to_string())),
                        Err(e) => (0, Err(e.to_string())),
                    };
                    mine.push(t.elapsed().as_secs_f64() * 1000.0);
                    let problem = match outcome {
                        (status, Ok(body)) if status == expect && !body.is_empty() => {
                            my_bytes += body.len() as u64;
                            None
                        }
                        (status, Ok(body)) => Some(format!("status {status}: {}", body.chars().take(160).collect::<String>())),
                        (status, Err(e)) => Some(format!("status {status}: {e}")),
                    };
                    if let Some(p) = problem {
                        let mut f = failures.lock().unwrap();
                        f.0 += 1;
                        if f.1.len() < 5 {
                            f.1.push(p);
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
                *bytes.lock().unwrap() += my_bytes;
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort_by(f64::total_cmp);
    let (failures, failure_samples) = std::mem::take(&mut *failures.lock().unwrap());
    let total_bytes = *bytes.lock().unwrap();
    RouteLoad {
        path: path.to_string(),
        requests: all.len() as u64,
        failures,
        failure_samples,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().copied().unwrap_or(0.0),
        bytes: total_bytes,
    }
}

/// An open `/api/v1/stream` connection, as a live dashboard tab holds one.
pub struct SseClient {
    reader: BufReader<TcpStream>,
}

impl SseClient {
    /// Connects (`host_port` like `127.0.0.1:3000`) and checks the answer is a 200 event stream.
    pub fn connect(host_port: &str, bearer: &str) -> Result<SseClient, String> {
        let mut stream = TcpStream::connect(host_port).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        write!(
            stream,
            "GET /api/v1/stream HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {bearer}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .map_err(|e| format!("send: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).map_err(|e| format!("status line: {e}"))?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("answered {}", status.trim()));
        }
        Ok(SseClient { reader })
    }

    /// Reads until the next `data:` line; returns its length.
    pub fn next_event(&mut self) -> Result<usize, String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the stream".into());
            }
            if let Some(data) = line.strip_prefix("data:") {
                return Ok(data.len());
            }
        }
    }
}

/// RssAnon of a process in KiB (the memory a leak would grow).
pub fn rss_anon_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("RssAnon:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Seconds and peak RssAnon (MiB) of one command, sampled every few milliseconds (benchmarks).
pub fn measure(command: &mut std::process::Command) -> (f64, f64) {
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starts");
    let mut peak = 0u64;
    loop {
        if let Some(kib) = rss_anon_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{command:?}: {status}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    (started.elapsed().as_secs_f64(), peak as f64 / 1024.0)
}
