//! The leak detector on real services through the whole pipeline (sampler,
//! minute rollups, detector, API and pages). The minimum age is shortened to
//! 5 minutes so the test takes minutes, not the default 25; the corpus test in
//! `crates/detect` measures accuracy with the defaults.

use std::time::{Duration, Instant};

use end2end::{fixture_image, Server, TestContainer, WebhookReceiver};


#[test]
fn a_leaking_service_is_flagged_and_steady_or_warming_services_are_not() {
    let server = Server::start(&["--leak-min-age", "5m"], &[]);
    // Where the team looks: one message per new leak verdict, none for the others.
    let receiver = WebhookReceiver::start();
    server.add_webhook("team", &receiver.url);
    let java = fixture_image("java");
    let leak = TestContainer::run_image(
        "detect-leak",
        &java,
        // Labelled for an automatic dump when the verdict says leak.
        &["-e", "LEAK_KIB_PER_SEC=341", "-e", "OBJECT_BYTES=16384", "-m", "1g", "--label", "io.leakscope.capture=on-leak"],
        &[],
    );
    // Two replicas of one compose service (the labels compose sets): one leaks, one does not.
    const REPLICA: [&str; 4] = ["--label", "com.docker.compose.project=detect", "--label", "com.docker.compose.service=worker"];
    let native = TestContainer::run_image("detect-native", &fixture_image("native"), &[&["-e", "LEAK_KIB_PER_SEC=170", "-m", "512m"][..], &REPLICA].concat(), &[]);
    let _replica = TestContainer::run_image("detect-native-2", &fixture_image("native"), &[&["-e", "LEAK_KIB_PER_SEC=0", "-m", "512m"][..], &REPLICA].concat(), &[]);
    let steady = TestContainer::run_image("detect-steady", &java, &["-e", "MODE=steady", "-e", "GARBAGE_MIB_PER_SEC=20", "-m", "256m"], &[]);
    let warmup = TestContainer::run_image(
        "detect-warmup",
        &java,
        &["-e", "MODE=warmup", "-e", "CACHE_MIB=24", "-e", "LEAK_KIB_PER_SEC=1024", "-m", "256m"],
        &[],
    );
    // Containers started after the server are found through the engine's events: a moment later.
    for c in [&leak, &native, &steady, &warmup] {
        server.wait_until(Duration::from_secs(60), "the container is known", || server.get(&format!("/api/v1/containers/{}", c.name)).0 == 200);
    }
    let verdict = |name: &str| {
        let (status, body) = server.get_json(&format!("/api/v1/containers/{name}/leak"));
        assert_eq!(status, 200, "{body}");
        body
    };
    let started = Instant::now();
    let mut flagged = [None, None];
    while started.elapsed() < Duration::from_secs(14 * 60) {
        for (i, c) in [&leak, &native].into_iter().enumerate() {
            if flagged[i].is_none() && verdict(&c.name)["verdict"] == "leak" {
                flagged[i] = Some(started.elapsed());
            }
        }
        for c in [&steady, &warmup] {
            let v = verdict(&c.name);
            assert_ne!(v["verdict"], "leak", "{} was called a leak after {:?}: {}", c.name, started.elapsed(), v["reason"]);
        }
        if flagged.iter().all(Option::is_some) && started.elapsed() > Duration::from_secs(8 * 60) {
            break;
        }
        std::thread::sleep(Duration::from_secs(15));
    }
    println!("flagged after {flagged:?}");
    assert!(flagged.iter().all(Option::is_some), "not flagged within 14 minutes: {flagged:?}; java: {}", verdict(&leak.name));
    let v = verdict(&leak.name);
    let slope_mib_h = v["slope_bytes_per_hour"].as_f64().unwrap() / 1048576.0;
    assert!((slope_mib_h / (20.0 * 60.0) - 1.0).abs() < 0.3, "slope {slope_mib_h:.0} MiB/h, expected about 1200");
    assert!(v["time_to_limit_seconds"].as_f64().unwrap() > 0.0);

    // The dashboard's data and the container page carry the verdict.
    std::thread::sleep(Duration::from_secs(61)); // the periodic assessment has run at least once more
    let listed = server.listed(&leak.name).unwrap();
    assert_eq!(listed["leak"]["verdict"], "leak", "{listed}");
    let (_, page) = server.get(&format!("/containers/{}", leak.name));
    assert!(page.contains("id=\"leak-verdict\"") && page.contains("data-verdict=\"leak\""), "the page shows no leak verdict");
    // One verdict for the service over its replicas, on the API and the dashboard.
    let (status, services) = server.get_json("/api/v1/services");
    assert_eq!(status, 200, "{services}");
    let worker = services.as_array().unwrap().iter().find(|s| s["service"] == "worker").cloned().unwrap_or_else(|| panic!("no worker service: {services}"));
    assert_eq!(worker["verdict"], "leak", "{worker}");
    assert_eq!(worker["replicas"].as_array().unwrap().len(), 2, "{worker}");
    assert_eq!(worker["leaking"], serde_json::json!([native.name]), "{worker}");
    assert!(worker["reason"].as_str().unwrap().starts_with("1 of 2 replicas leak"), "{worker}");
    let (_, dashboard) = server.get("/");
    assert!(dashboard.contains("id=\"services\"") && dashboard.contains("data-service=\"detect/worker\" data-verdict=\"leak\""), "the dashboard has no service row");
    let (status, svg) = server.get(&format!("/containers/{}/memory.svg?range=15m", leak.name));
    assert_eq!(status, 200);
    assert!(svg.contains("\ntrend\n"), "the chart has no trend line");

    // The label asked for a dump on the leak verdict; it was taken by itself.
    let auto_dump = || {
        let (_, list) = server.get_json(&format!("/api/v1/dumps?container={}", leak.name));
        list.as_array().unwrap().iter().find(|d| d["trigger"] == "auto").cloned()
    };
    server.wait_until(Duration::from_secs(120), "an automatic dump on the leak verdict", || auto_dump().is_some());
    let dump = auto_dump().unwrap();
    assert!(dump["requested_by"].as_str().unwrap().contains("leak verdict"), "{dump}");
    for c in [&native, &steady, &warmup] {
        let (_, list) = server.get_json(&format!("/api/v1/dumps?container={}", c.name));
        assert_eq!(list.as_array().unwrap().len(), 0, "{} was dumped without asking", c.name);
    }

    // Exactly one message per new verdict, through every assessment since; the others said nothing.
    for c in [&leak, &native] {
        let said = receiver.events("leak", &c.name);
        assert_eq!(said.len(), 1, "{}: {said:?}", c.name);
        assert_eq!(said[0]["verdict"], "leak");
        assert!(said[0]["time_to_limit_seconds"].as_f64().is_some_and(|t| t > 0.0), "{}", said[0]);
        assert!(said[0]["sentence"].as_str().unwrap().contains("reaches its"), "{}", said[0]);
    }
    for c in [&steady, &warmup] {
        assert!(receiver.received().iter().all(|b| b["container"] != c.name.as_str()), "{} was notified: {:?}", c.name, receiver.received());
    }
}

#[test]
fn an_oom_killed_container_shows_the_oom_marker_and_plain_exits_do_not() {
    let server = Server::start(&[], &[]);
    // 2 MiB/s under a 48 MiB limit: OOM-killed within half a minute.
    let oom = TestContainer::run_image(
        "detect-oom",
        &fixture_image("native"),
        &["-e", "LEAK_KIB_PER_SEC=2048", "-m", "48m", "--memory-swap", "48m"],
        &[],
    );
    // Killed by a signal without any memory trouble: 137 too, but not an OOM.
    let killed = TestContainer::run("detect-killed", &[], &["sleep", "600"]);
    server.wait_until(Duration::from_secs(20), "the sleeper is sampled", || server.listed(&killed.name).is_some());
    end2end::docker(&["kill", &killed.name]);
    let events = |name: &str| server.get_json(&format!("/api/v1/containers/{name}/events?range=1h")).1;
    server.wait_until(Duration::from_secs(90), "the OOM kill is recorded", || {
        events(&oom.name).as_array().is_some_and(|list| list.iter().any(|e| e["label"] == "OOM killed (137)"))
    });
    server.wait_until(Duration::from_secs(30), "the kill is recorded", || {
        events(&killed.name).as_array().is_some_and(|list| list.iter().any(|e| e["action"] == "die"))
    });
    let killed_events = events(&killed.name);
    let die = killed_events.as_array().unwrap().iter().find(|e| e["action"] == "die").unwrap();
    assert_eq!(die["label"], "killed (137)", "{killed_events}");

    let (_, page) = server.get(&format!("/containers/{}", oom.name));
    assert!(page.contains("data-ooms=\"1\""), "the container page does not count the OOM kill");
    assert!(page.contains("OOM killed (137)"));
    let (_, svg) = server.get(&format!("/containers/{}/memory.svg?range=15m", oom.name));
    assert!(svg.contains("\nOOM\n"), "the chart has no OOM marker");
}

#[test]
fn log_lines_around_a_moment_come_from_the_engine() {
    let server = Server::start(&[], &[]);
    let talker = TestContainer::run("detect-logs", &[], &["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 1; done"]);
    server.wait_until(Duration::from_secs(20), "the container is known", || server.listed(&talker.name).is_some());
    std::thread::sleep(Duration::from_secs(6));
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 3000;
    let (status, logs) = server.get_json(&format!("/api/v1/containers/{}/logs?at={at}&seconds=4", talker.name));
    assert_eq!(status, 200, "{logs}");
    let lines = logs["lines"].as_array().unwrap();
    assert!(!lines.is_empty() && lines.len() <= 6, "{logs}");
    assert!(lines.iter().all(|l| l["text"].as_str().unwrap().starts_with("line-") && l["stream"] == "stdout"), "{logs}");
    // The page shows them when the chart was clicked at that moment (`?logs=` in the URL).
    let (_, page) = server.get(&format!("/containers/{}?range=15m&logs={at}", talker.name));
    assert!(page.contains("id=\"logs-panel\"") && page.contains("line-"), "the page shows no log lines");
}

/// `leakscope detect --csv`: the restarts come from the file, and a drop inside
/// one process life is not taken for a restart.
#[test]
fn the_offline_detector_takes_restarts_from_the_csv() {
    let dir = std::env::temp_dir().join(end2end::unique_name("detect-csv"));
    std::fs::create_dir_all(&dir).unwrap();
    // Climbs 10 MiB/min for 40 min, drops to where it began, climbs again for 25 min at the same rate.
    let mib = 1024.0 * 1024.0;
    let rows: Vec<(i64, f64)> = (0..65 * 4)
        .map(|i| {
            let t = i as f64 * 15.0;
            let climb = if t < 2400.0 { t } else { t - 2400.0 };
            (1_790_000_000 + t as i64, 200.0 * mib + climb / 60.0 * 10.0 * mib)
        })
        .collect();
    let write = |name: &str, header: &str, extra: &dyn Fn(i64) -> String| {
        let mut csv = format!("timestamp,working_set_bytes,limit_bytes{header}\n");
        for (t, bytes) in &rows {
            csv.push_str(&format!("{t},{bytes:.0},{}{}\n", 4096.0 * mib, extra(*t)));
        }
        let path = dir.join(name);
        std::fs::write(&path, csv).unwrap();
        path
    };
    let verdict = |path: &std::path::Path| {
        let out = std::process::Command::new(end2end::leakscope_bin()).args(["detect", "--json", "--csv"]).arg(path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let one_life = verdict(&write("one-life.csv", ",started_at", &|_| ",1789990000".into()));
    assert_ne!(one_life["verdict"], "leak", "{one_life}");
    assert!(one_life["reason"].as_str().unwrap().contains("not yet above where it was before"), "{one_life}");
    let restart_at = rows[160].0;
    let restarted = verdict(&write("restarted.csv", ",restart", &|t| if t == restart_at { ",1".into() } else { ",".into() }));
    assert_eq!(restarted["verdict"], "leak", "{restarted}");
    assert_eq!(restarted["segments"], 2, "{restarted}");

    let bad = write("bad.csv", ",restart", &|_| ",perhaps".into());
    let out = std::process::Command::new(end2end::leakscope_bin()).args(["detect", "--csv"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("restart must be"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
