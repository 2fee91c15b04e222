//! Every page and read route under a team's worth of concurrent clients: 32
//! at once for a few seconds each, then 200 live streams. Zero failures, zero
//! panics in the server log; the p99 of each route is printed
//! (`cargo test --release -p end2end --test load -- --nocapture`) and kept
//! in `target/load-test.txt`.

use std::time::Duration;

use end2end::load::{hammer, rss_anon_kib, SseClient};
use end2end::{create_report, seed_history, upload_analysed_dumps, Server, TestContainer};

const CLIENTS: usize = 32;
const SECONDS_PER_ROUTE: u64 = 3;
const STREAMS: usize = 200;

#[test]
fn every_route_holds_up_under_concurrent_clients() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("load", &["-m", "512m"], &["sleep", "3600"]);
    server.wait_until(Duration::from_secs(30), "listed", || server.listed(&c.name).is_some());
    // A day of history so every range preset has something to draw.
    seed_history(&server, &c.name, 24 * 60);
    let dumps = upload_analysed_dumps(&server, &c.name, &[2_000, 20_000]);
    let (report_id, report_url) = create_report(&server, &c.name, 24 * 3600, &dumps);
    // The report names the host its container ran on.
    let (_, report) = server.get_json(&format!("/api/v1/reports/{report_id}"));
    assert_eq!(report["host"], server.get_json("/api/v1/hosts").1[0]["name"], "{report}");
    let (status, shared) = end2end::answer(server.request("POST", &format!("/api/v1/reports/{report_id}/share")).call(), "share");
    assert_eq!(status, 200, "{shared}");
    let public_url = serde_json::from_str::<serde_json::Value>(&shared).unwrap()["url"].as_str().unwrap().to_string();
    let (_, analysis) = server.get_json(&format!("/api/v1/dumps/{}/analysis", dumps[1]));
    let object = analysis["dominators"][0]["object_id"].as_str().map(str::to_string);
    let (a, b, name) = (&dumps[0], &dumps[1], &c.name);
    let at = leakscope_engine::now_ms() - 30_000;

    let mut routes: Vec<(String, u16)> = vec![("/".into(), 200), (format!("/containers/{name}"), 200)];
    for preset in leakscope_model::PRESETS {
        routes.push((format!("/containers/{name}?range={}", preset.key), 200));
    }
    routes.extend(
        [
            format!("/containers/{name}?range=1h&logs={at}"),
            format!("/containers/{name}/memory.svg?range=24h"),
            format!("/containers/{name}/memory.png?range=24h"),
            "/dumps".into(),
            format!("/dumps?container={name}"),
            format!("/dumps/{b}"),
            format!("/dumps/{b}/treemap.svg"),
            format!("/dumps/{a}/diff/{b}"),
            "/reports".into(),
            report_url.clone(),
            format!("{report_url}/chart.svg"),
            format!("{report_url}/chart.png"),
            format!("{report_url}/report.md"),
            "/admin".into(),
            "/api/v1/engine".into(),
            "/api/v1/containers".into(),
            "/api/v1/services".into(),
            format!("/api/v1/containers/{name}"),
            format!("/api/v1/containers/{name}/memory?range=24h"),
            format!("/api/v1/containers/{name}/memory?range=15m&step=1"),
            format!("/api/v1/containers/{name}/leak"),
            format!("/api/v1/containers/{name}/events?range=24h"),
            format!("/api/v1/containers/{name}/limit-advice"),
            format!("/api/v1/containers/{name}/logs?at={at}"),
            format!("/api/v1/containers/{name}/dumps"),
            "/api/v1/dumps".into(),
            format!("/api/v1/dumps/{b}"),
            format!("/api/v1/dumps/{b}/analysis"),
            format!("/api/v1/dumps/{a}/diff/{b}"),
            "/api/v1/reports".into(),
            format!("/api/v1/reports/{report_id}"),
            "/api/v1/me".into(),
            "/api/v1/users".into(),
            "/api/v1/tokens".into(),
            "/api/v1/audit".into(),
        ]
        .into_iter()
        .map(|p| (p, 200)),
    );
    if let Some(object) = object {
        routes.push((format!("/dumps/{b}?node={object}"), 200));
        routes.push((format!("/api/v1/dumps/{b}/objects/{object}"), 200));
    }

    let rss_before = rss_anon_kib(server.pid()).unwrap_or(0);
    let mut results = Vec::new();
    for (path, expect) in &routes {
        let r = hammer(&server.base, path, Some(&server.token), *expect, CLIENTS, Duration::from_secs(SECONDS_PER_ROUTE));
        println!("{}", r.line());
        results.push(r);
    }
    // The public link, signed out, as a chat preview or a reader without an account opens it.
    for path in [public_url.clone(), format!("{public_url}/chart.png"), "/login".to_string()] {
        let r = hammer(&server.base, &path, None, 200, CLIENTS, Duration::from_secs(SECONDS_PER_ROUTE));
        println!("{}", r.line());
        results.push(r);
    }

    // 200 live dashboards at once: each connects and receives overview events.
    let host_port = server.base.trim_start_matches("http://").to_string();
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            let (host_port, token) = (host_port.clone(), server.token.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = SseClient::connect(&host_port, &token)?;
                for _ in 0..2 {
                    client.next_event()?;
                }
                Ok(())
            })
        })
        .collect();
    let stream_failures: Vec<String> = streams.into_iter().filter_map(|t| t.join().unwrap().err()).collect();
    println!("{STREAMS} live streams: {} failed {:?}", stream_failures.len(), stream_failures.iter().take(3).collect::<Vec<_>>());
    let rss_after = rss_anon_kib(server.pid()).unwrap_or(0);
    let total: u64 = results.iter().map(|r| r.requests).sum();
    let summary = format!("{total} requests over {} routes; server RssAnon {} -> {} MiB", results.len(), rss_before / 1024, rss_after / 1024);
    println!("{summary}");
    // Kept for review beside the screenshots: every route's p99 from this run.
    let table: Vec<String> = results.iter().map(|r| r.line()).collect();
    let report = format!("{}\n{STREAMS} live streams: {} failed\n{summary}\n", table.join("\n"), stream_failures.len());
    let _ = std::fs::write(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/load-test.txt"), report);

    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.failures > 0 || r.requests == 0)
        .map(|r| format!("{} ({} of {}): {:?}", r.path, r.failures, r.requests, r.failure_samples))
        .collect();
    assert!(failed.is_empty(), "routes failed under load:\n{}", failed.join("\n"));
    assert!(stream_failures.is_empty(), "live streams failed: {stream_failures:?}");
    let log = server.log_text();
    assert!(!log.contains("panicked"), "the server log shows a panic:\n{log}");
    let (_, engine) = server.get_json("/api/v1/engine");
    assert_eq!(engine["handler_panics"], 0, "{engine}");
}
