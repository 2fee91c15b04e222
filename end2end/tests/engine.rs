//! The dashboard's numbers against a real Docker engine.

use std::time::Duration;

use end2end::{busybox_image, docker, docker_stats_working_set, Server, TestContainer};

const MIB: u64 = 1 << 20;

fn shm_filler(what: &str, limit: Option<&str>) -> TestContainer {
    let mut options = vec![];
    if let Some(l) = limit {
        options.extend(["--memory", l]);
    }
    TestContainer::run(
        what,
        &options,
        &["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 2>/dev/null; sleep 100000"],
    )
}

fn running_with_memory(server: &Server, name: &str) -> serde_json::Value {
    let mut found = None;
    server.wait_until(Duration::from_secs(30), "the container is sampled", || {
        found = server.listed(name).filter(|c| c["memory"]["working_set_bytes"].as_u64().unwrap_or(0) > 40 * MIB);
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn working_set_matches_docker_stats_and_limits_are_reported() {
    let server = Server::start(&[], &[]);
    let limited = shm_filler("limited", Some("128m"));
    let unlimited = shm_filler("unlimited", None);

    let c = running_with_memory(&server, &limited.name);
    assert_eq!(c["state"], "running");
    assert_eq!(c["id"], limited.id);
    assert_eq!(c["memory"]["limit_bytes"], 128 * MIB);
    assert_eq!(c["memory"]["limit_set"], true);
    assert!(c["memory"]["usage_bytes"].as_u64().unwrap() >= c["memory"]["working_set_bytes"].as_u64().unwrap());

    // Same moment: Leakscope's latest sample (1-s interval) next to docker stats.
    let ours = server.listed(&limited.name).unwrap()["memory"]["working_set_bytes"].as_u64().unwrap();
    let theirs = docker_stats_working_set(&limited.name);
    let diff = (ours as f64 - theirs as f64).abs() / theirs as f64;
    assert!(diff <= 0.05, "Leakscope {ours} vs docker stats {theirs}: {:.1} % apart", diff * 100.0);

    let u = running_with_memory(&server, &unlimited.name);
    assert_eq!(u["memory"]["limit_set"], false);
    assert!(u["memory"]["limit_bytes"].is_null(), "no limit is reported as null, not host RAM: {u}");
    assert!(u["limit_bytes"].is_null());

    // The series API returns the samples, raw at a short step.
    let (status, series) = server.get_json(&format!("/api/v1/containers/{}/memory?range=15m&step=1", limited.name));
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["source"], "raw");
    let points = series["points"].as_array().unwrap();
    assert!(!points.is_empty());
    assert!(points.iter().all(|p| p["limit_bytes"] == 128 * MIB));
    // A long step reads the minute rollups.
    let (status, rolled) = server.get_json(&format!("/api/v1/containers/{}/memory?range=24h&step=300", limited.name));
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["source"], "rollup_1m");
    // A step of hours, or a window older than the minutes kept, reads the hourly ones.
    let (status, hourly) = server.get_json(&format!("/api/v1/containers/{}/memory?range=30d&step=7200", limited.name));
    assert_eq!(status, 200, "{hourly}");
    assert_eq!((hourly["source"].as_str(), hourly["step_seconds"].as_u64()), (Some("rollup_1h"), Some(7200)));

    // The dashboard page lists both, and says "no limit" for the second.
    let (status, html) = server.get("/");
    assert_eq!(status, 200);
    assert!(html.contains(&limited.name) && html.contains(&unlimited.name));
    assert!(html.contains("no limit"));
}

#[test]
fn stopped_containers_are_marked_and_unknown_ones_are_404() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("stopper", &["--memory", "64m"], &["sleep", "100000"]);
    server.wait_until(Duration::from_secs(30), "listed running", || {
        server.listed(&c.name).is_some_and(|c| c["state"] == "running" && !c["memory"].is_null())
    });
    docker(&["stop", "-t", "0", &c.name]);
    server.wait_until(Duration::from_secs(20), "marked stopped", || {
        server.listed(&c.name).is_some_and(|c| c["state"] == "exited" && c["memory"].is_null())
    });
    let (status, html) = server.get(&format!("/containers/{}", c.name));
    assert_eq!(status, 200);
    assert!(html.contains("stopped"), "the container page says stopped");

    let (status, body) = server.get_json("/api/v1/containers/no-such-container-anywhere");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no-such-container-anywhere"));
    let (status, _) = server.get_json("/api/v1/containers/no-such-container-anywhere/memory?range=1h");
    assert_eq!(status, 404);
    let (status, _) = server.get("/containers/no-such-container-anywhere");
    assert_eq!(status, 404);
    let (status, body) = server.get_json(&format!("/api/v1/containers/{}/memory?range=2y", c.name));
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown range"));

    // Removed containers keep their history.
    docker(&["rm", "-f", &c.name]);
    server.wait_until(Duration::from_secs(20), "removed from the list", || server.listed(&c.name).is_none());
    let (status, detail) = server.get_json(&format!("/api/v1/containers/{}", c.name));
    assert_eq!(status, 200);
    assert_eq!(detail["present"], false);
    let (status, series) = server.get_json(&format!("/api/v1/containers/{}/memory?range=15m", c.name));
    assert_eq!(status, 200);
    assert!(!series["points"].as_array().unwrap().is_empty(), "history survives removal");
}

#[test]
fn cgroup_files_and_engine_api_agree() {
    let c = shm_filler("paths", Some("128m"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = leakscope_engine::docker::connect(leakscope_engine::docker::DEFAULT_ADDRESS).await.unwrap();
        let reader = leakscope_engine::cgroup::CgroupReader::detect(std::path::Path::new("/sys/fs/cgroup"))
            .expect("this host exposes its cgroup filesystem");
        let dir = reader.locate(&c.id).expect("the container's cgroup directory is found");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let api = leakscope_engine::docker::api_reading(&conn.docker, &c.id).await.unwrap().unwrap();
        let file = reader.read(&dir).unwrap();
        let diff = (api.working_set as f64 - file.working_set as f64).abs() / api.working_set as f64;
        assert!(diff < 0.02, "API {api:?} vs cgroup {file:?}");
        assert!(file.working_set > 40 * MIB);
    });
}

#[test]
fn serve_starts_without_an_engine_and_says_why() {
    let socket = std::env::temp_dir().join(format!("no-docker-{}.sock", std::process::id()));
    let host = format!("unix://{}", socket.display());
    let server = Server::start(&[], &[("DOCKER_HOST", host.as_str())]);
    server.wait_until(Duration::from_secs(10), "the engine status names the failure", || {
        let (_, status) = server.get_json("/api/v1/engine");
        status["connected"] == false && status["error"].as_str().is_some_and(|e| e.contains("does not exist"))
    });
    let (status, body) = server.get_json("/api/v1/containers");
    assert_eq!(status, 503);
    assert!(body["error"].as_str().unwrap().contains(&host), "{body}");
    for page in ["/", "/containers/anything"] {
        let (_, html) = server.get(page);
        assert!(html.contains("Docker engine unreachable"), "{page} shows the banner");
        assert!(html.contains(&host), "{page} names the address tried");
    }
    // Start the test image once so its cost is not charged to a later test.
    let _ = busybox_image();
}

#[test]
fn samples_survive_kill_9() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("kill9", &["--memory", "64m"], &["sleep", "100000"]);
    server.wait_until(Duration::from_secs(30), "sampled a few times", || {
        let (status, series) = server.get_json(&format!("/api/v1/containers/{}/memory?range=15m&step=1", c.name));
        status == 200 && series["points"].as_array().is_some_and(|p| p.len() >= 3)
    });
    let (_, before) = server.get_json(&format!("/api/v1/containers/{}/memory?range=15m&step=1", c.name));
    let before: Vec<i64> = before["points"].as_array().unwrap().iter().map(|p| p["time_ms"].as_i64().unwrap()).collect();
    let server = server.kill9_and_restart();
    let (status, after) = server.get_json(&format!("/api/v1/containers/{}/memory?range=15m&step=1", c.name));
    assert_eq!(status, 200);
    let after: Vec<i64> = after["points"].as_array().unwrap().iter().map(|p| p["time_ms"].as_i64().unwrap()).collect();
    for t in &before {
        assert!(after.contains(t), "sample at {t} survived kill -9");
    }
}

/// Events that happen while Leakscope is down are replayed from the engine
/// when it comes back (from the last stored event), so a kill is not lost.
#[test]
fn events_while_leakscope_was_down_are_replayed() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("replay", &[], &["sleep", "100000"]);
    let actions = |server: &Server| -> Vec<String> {
        let (_, events) = server.get_json(&format!("/api/v1/containers/{}/events?range=1h", c.name));
        events.as_array().map(|a| a.iter().map(|e| e["label"].as_str().unwrap_or("").to_string()).collect()).unwrap_or_default()
    };
    // Its start is stored (the container may start before the server follows events: restart it to be sure).
    end2end::docker(&["restart", "-t", "0", &c.name]);
    server.wait_until(Duration::from_secs(30), "a start event", || actions(&server).iter().any(|a| a.contains("start")));
    let server = server.kill9_and_restart_after(|| {
        end2end::docker(&["kill", &c.name]);
    });
    server.wait_until(Duration::from_secs(30), "the kill replayed", || actions(&server).iter().any(|a| a == "killed (137)"));
}
