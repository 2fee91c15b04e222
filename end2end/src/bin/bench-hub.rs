//! Hub benchmark: one `leakscope serve` (the hub, watching this machine's
//! engine itself) and A agents (default 3), each in a network namespace of
//! its own behind a veth pair and each watching the N containers (default
//! 100) this run starts: A × N containers reach the hub over real links.
//!
//! Measured side by side in one run: the hub's CPU and memory before the
//! agents and with them, each agent's CPU and memory, the bytes on each link
//! (the veth counters: TCP/IP, TLS-free websocket frames and all), and the
//! latency from an agent's cgroup read (`memory.time_ms`) to the hub's live
//! dashboard stream carrying it. The projection to 100 hosts × 100
//! containers is the hub's measured cost per agent container, times 10 000.
//!
//! Run (root, for `ip netns`): cargo run --release -p end2end --bin bench-hub -- [agents] [containers] [seconds]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{busybox_image, docker, free_port, leakscope_bin, Netns};

const LABEL: &str = "io.leakscope.bench=hub";

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else { return 0 };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    fields.get(11).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0) + fields.get(12).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("RssAnon:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// CPU (% of one core) and the mean RssAnon (MiB) of these processes over `seconds`.
fn measure(pids: &[u32], seconds: u64) -> Vec<(f64, f64)> {
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let mut rss = vec![0u64; pids.len()];
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        for (i, &p) in pids.iter().enumerate() {
            rss[i] += rss_anon_kib(p);
        }
    }
    pids.iter()
        .enumerate()
        .map(|(i, &p)| ((cpu_ticks(p) - before[i]) as f64 / 100.0 / seconds as f64 * 100.0, rss[i] as f64 / seconds as f64 / 1024.0))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let agents: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60);
    let image = busybox_image();
    end2end::remove_labelled(LABEL);
    eprintln!("starting {n} containers…");
    for i in 0..n {
        docker(&["run", "-d", "--label", LABEL, "--memory", "64m", "--network", "none", "--name", &format!("lshub-{i}"), &image, "sleep", "100000"]);
    }

    // The hub listens on every namespace's host-side address.
    let links: Vec<Netns> = (0..agents).map(|_| Netns::new()).collect();
    let data = std::env::temp_dir().join(end2end::unique_name("bench-hub"));
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let mut hub = Command::new(leakscope_bin())
        .args(["serve", "--bind", &format!("0.0.0.0:{port}"), "--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(data.join("hub.log")).unwrap()))
        .spawn()
        .unwrap();
    let local = format!("http://127.0.0.1:{port}");
    // Up (any answer) before a second process opens its database.
    let started = Instant::now();
    while matches!(ureq::get(&format!("{local}/api/v1/engine")).call(), Err(ureq::Error::Transport(_))) {
        assert!(started.elapsed() < Duration::from_secs(60), "the hub does not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    let token = end2end::create_token(&data, "admin", "bench");
    let get = |path: &str| -> serde_json::Value {
        ureq::get(&format!("{local}{path}")).set("Authorization", &format!("Bearer {token}")).call().ok().and_then(|r| r.into_json().ok()).unwrap_or_default()
    };
    let started = Instant::now();
    while get("/api/v1/containers").as_array().map_or(0, |c| c.len()) < n {
        assert!(started.elapsed() < Duration::from_secs(120), "the hub does not list the containers");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(10));
    eprintln!("hub alone for {seconds} s…");
    let alone = measure(&[hub.id()], seconds)[0];

    let mut children: Vec<Child> = Vec::new();
    for (i, ns) in links.iter().enumerate() {
        let name = format!("bench-agent-{i}");
        let out = Command::new(leakscope_bin()).args(["agent-token", "create", "--name", &name, "--data-dir", data.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let enroll = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_string();
        let dir = data.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", ns.name))
            .arg(leakscope_bin())
            .args(["agent", "--hub", &format!("http://{}:{port}", ns.host_ip), "--token", &enroll, "--data-dir", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("agent.log")).unwrap()))
            .spawn()
            .unwrap();
        children.push(child);
    }
    let per_host = |host: &str| get(&format!("/api/v1/containers?host={host}")).as_array().map_or(0, |c| c.iter().filter(|c| !c["memory"].is_null()).count());
    let started = Instant::now();
    while (0..agents).any(|i| per_host(&format!("bench-agent-{i}")) < n) {
        assert!(started.elapsed() < Duration::from_secs(180), "the agents' containers do not reach the hub");
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(10));
    let remote: usize = (0..agents).map(|i| per_host(&format!("bench-agent-{i}"))).sum();

    // The live stream, as a dashboard reads it: when does each new reading of an agent's container arrive?
    let latencies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let kept = latencies.clone();
    let stream_url = format!("{local}/api/v1/stream");
    let stream_token = token.clone();
    std::thread::spawn(move || {
        let Ok(response) = ureq::get(&stream_url).set("Authorization", &format!("Bearer {stream_token}")).call() else { return };
        let mut last: std::collections::HashMap<(String, String), i64> = Default::default();
        for line in BufReader::new(response.into_reader()).lines() {
            let Ok(line) = line else { return };
            let Some(json) = line.strip_prefix("data: ") else { continue };
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            let Ok(overview) = serde_json::from_str::<serde_json::Value>(json) else { continue };
            for c in overview["containers"].as_array().into_iter().flatten() {
                let host = c["host"].as_str().unwrap_or_default();
                let Some(time) = c["memory"]["time_ms"].as_i64() else { continue };
                if !host.starts_with("bench-agent-") {
                    continue;
                }
                let key = (host.to_string(), c["name"].as_str().unwrap_or_default().to_string());
                if last.insert(key, time) != Some(time) {
                    kept.lock().unwrap().push((now_ms - time) as f64);
                }
            }
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    latencies.lock().unwrap().clear(); // the first frame carries old readings

    eprintln!("hub with {agents} agents × {n} containers for {seconds} s…");
    let bytes_before: Vec<(u64, u64)> = links.iter().map(|l| l.host_side_bytes()).collect();
    let mut pids = vec![hub.id()];
    // The agent is nsenter's child (nsenter execs it: same pid).
    pids.extend(children.iter().map(|c| c.id()));
    let with = measure(&pids, seconds);
    let bytes: Vec<(u64, u64)> = links.iter().zip(&bytes_before).map(|(l, b)| (l.host_side_bytes().0 - b.0, l.host_side_bytes().1 - b.1)).collect();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);

    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = hub.kill();
    let _ = hub.wait();
    end2end::remove_labelled(LABEL);
    drop(links);
    let _ = std::fs::remove_dir_all(&data);

    let interval_s = 2.0; // the agents' default sampling interval
    let samples = remote as f64 * seconds as f64 / interval_s;
    let up: u64 = bytes.iter().map(|b| b.0).sum();
    let down: u64 = bytes.iter().map(|b| b.1).sum();
    let hub_cpu_per_container = (with[0].0 - alone.0).max(0.0) / remote as f64;
    let hub_mem_per_container = (with[0].1 - alone.1).max(0.0) / remote as f64;
    println!("agents × containers:                  {agents} × {n} ({remote} agent containers listed on the hub)");
    println!("hub alone (its own engine, {n}+ containers): {:.2} % of a core, RssAnon {:.1} MiB", alone.0, alone.1);
    println!("hub with the agents:                  {:.2} % of a core, RssAnon {:.1} MiB", with[0].0, with[0].1);
    for (i, a) in with[1..].iter().enumerate() {
        println!("agent {i}:                              {:.2} % of a core, RssAnon {:.1} MiB", a.0, a.1);
    }
    println!("on the wire (veth, both ways, all links): {:.1} KiB/s up, {:.1} KiB/s down", up as f64 / 1024.0 / seconds as f64, down as f64 / 1024.0 / seconds as f64);
    println!("bytes per sample (agent → hub):       {:.0} B ({} samples at {interval_s} s)", up as f64 / samples, samples as u64);
    if !lat.is_empty() {
        println!(
            "cgroup read → hub's live stream:      min {:.2} s, median {:.2} s, p99 {:.2} s, max {:.2} s ({} readings)",
            lat[0] / 1000.0,
            percentile(&lat, 0.5) / 1000.0,
            percentile(&lat, 0.99) / 1000.0,
            lat[lat.len() - 1] / 1000.0,
            lat.len()
        );
    }
    println!(
        "projection, 100 hosts × 100 containers: hub +{:.1} % of a core, +{:.0} MiB over its own; {:.1} MiB/s in",
        hub_cpu_per_container * 10_000.0,
        hub_mem_per_container * 10_000.0,
        up as f64 / seconds as f64 / remote as f64 * 10_000.0 / 1024.0 / 1024.0
    );
}
