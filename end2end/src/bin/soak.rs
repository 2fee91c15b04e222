//! Soak: does `leakscope serve` itself leak? N running containers, M live
//! dashboard clients (each loads `/`, holds the live stream for a minute,
//! then reloads, as a tab left open on a wall screen does), one client
//! paging through container pages and charts, for a given time. RssAnon of
//! the server is sampled every minute; at the end the slope of its floor
//! (Theil–Sen on a rolling minimum, as the leak detector trends containers)
//! and Leakscope's own verdict on that series are printed.
//!
//! The data folder starts with a day of history for every container (as a
//! Leakscope that has run for days has: one sample a minute, and the last
//! hour at the 2-s interval): the detector's and the charts' work grows with
//! the history they read, up to a day, so without it an hour's soak sees that
//! bounded growth and cannot tell it from a leak. `prefill_hours=0` starts empty.
//!
//! The floor's slope is judged after `warmup_minutes` (caches, connection
//! pools and the blocking pool fill first; earlier hour-long runs levelled off
//! after about half an hour), and the warm-up's own rise is printed beside it.
//!
//! `cargo run --release -p end2end --bin soak -- [containers=100] [clients=50] [minutes=60] [prefill_hours=24] [warmup_minutes=10]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use end2end::load::{rss_anon_kib, SseClient};
use end2end::{busybox_image, docker, Server};
use leakscope_detect::{assess, theil_sen, Params, Sample};

const LABEL: &str = "io.leakscope.bench=soak";

fn remove_soak_containers() {
    end2end::remove_labelled(LABEL);
}

/// A day (or `hours`) of samples for `lssoak-0…` (one a minute, every 2 s in
/// the last hour), under earlier containers of the same names (series are
/// kept by name), now removed.
fn prefill(data_dir: &std::path::Path, containers: u64, hours: u64) {
    use leakscope_engine::memory::MemoryReading;
    use leakscope_engine::store::{ContainerRecord, SampleRow, Store};
    let store = Store::open(&data_dir.join("leakscope.db").display().to_string()).expect("the store opens");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = now - hours as i64 * 3_600_000;
    let mut keys = Vec::new();
    for i in 0..containers {
        let record = ContainerRecord {
            id: format!("soak-history-{i}"),
            name: format!("lssoak-{i}"),
            image: "history".into(),
            compose_project: None,
            compose_service: None,
            state: "exited".into(),
            limit_bytes: Some(64 << 20),
            capture_label: None,
        };
        keys.push(store.upsert_container(&record, start).expect("insert"));
        store.mark_removed(&record.id).expect("mark removed");
    }
    let mut t = start;
    while t < now - 120_000 {
        let rows: Vec<SampleRow> = keys
            .iter()
            .map(|&key| {
                let ws = (1 << 20) + (key as u64 * 4096) + ((t / 60_000) % 17) as u64 * 1024;
                SampleRow { container_key: key, time_ms: t, reading: MemoryReading { usage: ws, working_set: ws, rss: ws, cache: 0 }, limit_bytes: Some(64 << 20) }
            })
            .collect();
        store.write_tick(&rows, t).expect("write");
        t += if now - t > 3_600_000 { 60_000 } else { 2_000 };
    }
}

fn get(agent: &ureq::Agent, url: &str, token: &str) -> bool {
    agent.get(url).set("Authorization", &format!("Bearer {token}")).call().ok().and_then(|r| r.into_string().ok()).is_some()
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let containers = *args.first().unwrap_or(&100);
    let clients = *args.get(1).unwrap_or(&50);
    let minutes = *args.get(2).unwrap_or(&60);
    let prefill_hours = *args.get(3).unwrap_or(&24);
    let warmup_minutes = *args.get(4).unwrap_or(&10);
    let image = busybox_image();
    remove_soak_containers();
    eprintln!("starting {containers} containers…");
    for i in 0..containers {
        docker(&["run", "-d", "--label", LABEL, "--memory", "64m", "--name", &format!("lssoak-{i}"), &image, "sleep", "100000"]);
    }
    let data_dir = std::env::temp_dir().join(format!("leakscope-soak-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).unwrap();
    if prefill_hours > 0 {
        eprintln!("writing {prefill_hours} h of minute history for {containers} containers…");
        prefill(&data_dir, containers, prefill_hours);
    }
    // The default interval, as a team runs it.
    let server = Server::start_with_data(data_dir, &["--interval", "2s"], &[]);
    server.wait_until(Duration::from_secs(60), "every container is listed", || {
        server.get_json("/api/v1/containers").1.as_array().is_some_and(|a| a.len() as u64 >= containers)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let (pages, events, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let host_port = server.base.trim_start_matches("http://").to_string();
    let mut threads = Vec::new();
    for _ in 0..clients {
        let (stop, pages, events, failures) = (stop.clone(), pages.clone(), events.clone(), failures.clone());
        let (base, host_port, token) = (server.base.clone(), host_port.clone(), server.token.clone());
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
            while !stop.load(Ordering::Relaxed) {
                if get(&agent, &format!("{base}/"), &token) { &pages } else { &failures }.fetch_add(1, Ordering::Relaxed);
                match SseClient::connect(&host_port, &token) {
                    Ok(mut stream) => {
                        let until = Instant::now() + Duration::from_secs(60);
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            if stream.next_event().is_err() {
                                failures.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            events.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }));
    }
    {
        // Someone on call paging through containers, one view a second.
        let (stop, pages, failures) = (stop.clone(), pages.clone(), failures.clone());
        let (base, token) = (server.base.clone(), server.token.clone());
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
            let presets = ["15m", "1h", "6h", "24h"];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("lssoak-{}", i % containers);
                let range = presets[(i % presets.len() as u64) as usize];
                for url in [format!("{base}/containers/{name}?range={range}"), format!("{base}/containers/{name}/memory.svg?range={range}")] {
                    if get(&agent, &url, &token) { &pages } else { &failures }.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }));
    }

    let start = Instant::now();
    let mut series = Vec::new();
    println!("minute  RssAnon MiB  page views  stream events  failures");
    for minute in 0..=minutes {
        let target = start + Duration::from_secs(minute * 60);
        std::thread::sleep(target.saturating_duration_since(Instant::now()));
        let kib = rss_anon_kib(server.pid()).expect("the server is running");
        series.push(Sample { t: minute as f64 * 60.0, bytes: kib as f64 * 1024.0 });
        println!(
            "{minute:>6}  {:>11.1}  {:>10}  {:>13}  {:>8}",
            kib as f64 / 1024.0,
            pages.load(Ordering::Relaxed),
            events.load(Ordering::Relaxed),
            failures.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    remove_soak_containers();

    // The floor: a rolling minimum over 5 minutes, so allocator peaks do not count.
    let floor: Vec<Sample> = series
        .iter()
        .enumerate()
        .map(|(i, s)| Sample { t: s.t, bytes: series[i.saturating_sub(4)..=i].iter().map(|x| x.bytes).fold(f64::MAX, f64::min) })
        .collect();
    // Judged after the warm-up (caches, pools and the blocking pool fill first).
    let warmup_end = warmup_minutes as f64 * 60.0;
    let settled: Vec<Sample> = floor.iter().copied().filter(|s| s.t >= warmup_end).collect();
    let slope_mib_per_hour = theil_sen(&settled) * 3600.0 / (1024.0 * 1024.0);
    let verdict = assess(&series, None, leakscope_detect::Starts::Known(&[]), &Params::default());
    let mib = |s: Option<&Sample>| s.map(|s| s.bytes).unwrap_or(0.0) / 1048576.0;
    println!(
        "soak: {containers} containers, {clients} live dashboard clients, {minutes} min: {} page views, {} stream events, {} failures",
        pages.load(Ordering::Relaxed),
        events.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );
    println!(
        "RssAnon floor during the {warmup_minutes}-min warm-up: {:.1} -> {:.1} MiB; over the {} min after it: {:.1} -> {:.1} MiB, \
         Theil-Sen slope of the floor {slope_mib_per_hour:+.2} MiB/h; Leakscope's own verdict on the whole run: {} ({})",
        mib(floor.first()),
        mib(settled.first()),
        minutes.saturating_sub(warmup_minutes),
        mib(settled.first()),
        mib(settled.last()),
        verdict.verdict.as_str(),
        verdict.reason
    );
}
