//! Leakscope survives a restart of the Docker engine: it notices, says so,
//! reconnects by itself and the chart shows the gap.
//! Restarts this machine's dockerd, so it runs only with
//! LEAKSCOPE_TEST_RESTART_DOCKERD=1 (set by `./dev test`).

use std::process::Command;
use std::time::{Duration, Instant};

use end2end::{docker, Server, TestContainer};

fn engine_up() -> bool {
    Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output().is_ok_and(|o| o.status.success())
}

fn dockerd_pid() -> Option<i32> {
    std::fs::read_to_string("/var/run/docker.pid").ok()?.trim().parse().ok()
}

#[test]
fn survives_a_dockerd_restart_and_shows_the_gap() {
    if std::env::var("LEAKSCOPE_TEST_RESTART_DOCKERD").as_deref() != Ok("1") {
        eprintln!("skipped: set LEAKSCOPE_TEST_RESTART_DOCKERD=1 to let this test restart dockerd");
        return;
    }
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("restart", &["--memory", "64m", "--restart", "always"], &["sleep", "100000"]);
    server.wait_until(Duration::from_secs(30), "sampled", || {
        server.listed(&c.name).is_some_and(|c| !c["memory"].is_null())
    });
    std::thread::sleep(Duration::from_secs(3));

    let pid = dockerd_pid().expect("dockerd writes /var/run/docker.pid");
    let down_at = Instant::now();
    assert!(Command::new("kill").arg(pid.to_string()).status().unwrap().success());
    server.wait_until(Duration::from_secs(30), "Leakscope notices the engine is gone", || {
        let (_, s) = server.get_json("/api/v1/engine");
        s["connected"] == false
    });
    let (status, _) = server.get_json("/api/v1/containers");
    assert_eq!(status, 503);
    let (_, html) = server.get("/");
    assert!(html.contains("Docker engine unreachable"));
    // Keep it down long enough that the gap is unmistakable.
    while dockerd_pid().is_some_and(|p| p == pid) && std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(6).saturating_sub(down_at.elapsed()));

    let log = std::env::temp_dir().join("leakscope-test-dockerd.log");
    Command::new("sh")
        .args(["-c", &format!("nohup dockerd > {} 2>&1 &", log.display())])
        .status()
        .unwrap();
    let start = Instant::now();
    while !engine_up() {
        assert!(start.elapsed() < Duration::from_secs(60), "dockerd did not come back");
        std::thread::sleep(Duration::from_millis(500));
    }
    // `--restart always` brings the container back; Leakscope reconnects by itself.
    server.wait_until(Duration::from_secs(60), "reconnected and sampling again", || {
        server.listed(&c.name).is_some_and(|c| c["state"] == "running" && !c["memory"].is_null())
    });
    std::thread::sleep(Duration::from_secs(3));
    let (status, series) = server.get_json(&format!("/api/v1/containers/{}/memory?range=15m&step=1", c.name));
    assert_eq!(status, 200);
    let times: Vec<i64> = series["points"].as_array().unwrap().iter().map(|p| p["time_ms"].as_i64().unwrap()).collect();
    let largest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(largest_gap >= 5_000, "the outage shows as a gap of at least 5 s, got {largest_gap} ms");
    docker(&["rm", "-f", &c.name]);
}
