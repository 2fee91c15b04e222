//! One-click heap snapshots of real Node.js processes in real containers: the
//! node fixture (our helper over node's inspector, closed again afterwards), a
//! node-only image (`FROM scratch`, non-root, read-only root, noexec /tmp, node
//! not PID 1, several node processes: our script on the container's own node),
//! an inspector already open (used and left open), and the failures (port 9229
//! taken, SIGUSR1 kept by the service, a container killed mid-snapshot).

use std::time::{Duration, Instant};

use end2end::{docker, fixture_image, Server, TestContainer};
use serde_json::Value;

/// 9229 as /proc/net/tcp writes ports.
const INSPECTOR_PORT_HEX: &str = ":240D";

fn wait_for_node(container: &TestContainer) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let logs = std::process::Command::new("docker")
            .args(["logs", &container.name])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&logs.stdout).contains("node-leak rate=") {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("node in {} did not start", container.name);
}

/// Runs JavaScript with the container's own node (the node-only image has no shell).
fn node_eval(container: &TestContainer, script: &str) -> String {
    docker(&["exec", &container.name, "/usr/bin/node", "-e", script])
}

/// Nothing of ours in the container's /tmp, and no inspector listening on 9229.
fn assert_clean_and_closed(container: &TestContainer) {
    let listing = node_eval(container, "const fs = require('fs'); console.log(fs.existsSync('/tmp') ? fs.readdirSync('/tmp').join(' ') : '')");
    assert!(
        !listing.contains("leakscope"),
        "files left in the container: {listing}"
    );
    assert!(
        !inspector_listening(container),
        "the inspector is still open after the capture"
    );
}

fn inspector_listening(container: &TestContainer) -> bool {
    let tcp = node_eval(
        container,
        "console.log(require('fs').readFileSync('/proc/net/tcp', 'utf8'))",
    );
    tcp.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(INSPECTOR_PORT_HEX) && f[3] == "0A"
    })
}

/// The stored dump is a V8 snapshot and its analysis finds the leak: the
/// listeners on `requestBus`, each a closure keeping its request's buffer.
fn check_snapshot(server: &Server, dump_id: &str) -> Value {
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{dump_id}"));
    assert_eq!(info["format"], "v8", "{info}");
    assert!(
        info["runtime"].as_str().unwrap().starts_with("node v18."),
        "{info}"
    );
    assert!(
        info["pause_ms"].as_u64().is_some(),
        "the record keeps the pause: {info}"
    );
    assert!(
        info["file_name"]
            .as_str()
            .unwrap()
            .ends_with(".heapsnapshot"),
        "{info}"
    );
    let response = server
        .request("GET", &format!("/api/v1/dumps/{dump_id}/download"))
        .call()
        .unwrap();
    let mut head = vec![0u8; 12];
    std::io::Read::read_exact(&mut response.into_reader(), &mut head).unwrap();
    assert_eq!(&head, b"{\"snapshot\":");
    let started = Instant::now();
    loop {
        let (status, analysis) = server.get_json(&format!("/api/v1/dumps/{dump_id}/analysis"));
        if status == 200 {
            assert_eq!(
                analysis["summary"]["runtime"], "node",
                "{}",
                analysis["summary"]
            );
            let classes: Vec<&str> = analysis["histogram"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|h| h["class"].as_str())
                .collect();
            assert!(
                classes.contains(&"(closure)") && classes.contains(&"EventEmitter"),
                "{classes:?}"
            );
            return info;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "analysis not ready: {analysis}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn node_without_flags_is_captured_over_its_inspector_which_is_closed_again() {
    let server = Server::start(&[], &[]);
    let node = TestContainer::run_image("ncap-plain", &fixture_image("node"), &["-m", "512m"], &[]);
    wait_for_node(&node);
    let first = server.capture_job(&node.name, "");
    let second = server.capture_job(&node.name, "{}");
    assert_eq!(first, second, "a second click joins the running capture");
    let state = server.wait_job(&first);
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["runtime"], "node");
    assert_eq!(state["recipe"], "node-inspector");
    assert!(
        state["objects_total"].as_u64().unwrap() > 1000,
        "V8's progress is reported: {state}"
    );
    assert!(
        state["inspector"]
            .as_str()
            .unwrap()
            .contains("closed again"),
        "{state}"
    );
    let info = check_snapshot(&server, state["dump_id"].as_str().unwrap());
    assert_eq!(info["pid"], 1);
    assert_clean_and_closed(&node);
    // The process lives on through more open-snapshot-close cycles (an
    // inspector closed while our connection closed crashed Node 18 once in a few).
    let mut later = Vec::new();
    for _ in 0..3 {
        let again = server.wait_job(&server.capture_job(&node.name, ""));
        assert_eq!(again["state"], "done", "{again}");
        assert_clean_and_closed(&node);
        later.push(again["dump_id"].as_str().unwrap().to_string());
    }
    // Closing the inspector resets V8's object ids, so two captures compare
    // per constructor only (uploads of one process's own snapshots compare by id).
    let (first_id, last_id) = (state["dump_id"].as_str().unwrap(), later.last().unwrap());
    check_snapshot(&server, last_id);
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{first_id}/diff/{last_id}"));
    assert_eq!(status, 200, "{diff}");
    assert!(diff["objects"].is_null(), "{}", diff["objects"]);
    let closures = diff["classes"].as_array().unwrap().iter().find(|c| c["class"] == "(closure)").expect("closures in the diff");
    assert!(closures["instances_delta"].as_i64().unwrap() > 0, "the leak's listeners grew: {closures}");
}

#[test]
fn node_only_image_read_only_non_root_with_workers_uses_the_containers_own_node() {
    let server = Server::start(&[], &[]);
    // Two workers forked by a parent, as with cluster or `npm start`: three node processes.
    let parent =
        "const { fork } = require('child_process'); fork('/app/leak.js'); fork('/app/leak.js');";
    let node = TestContainer::run_image(
        "ncap-scratch",
        &fixture_image("node-only"),
        &["--read-only", "--tmpfs", "/tmp", "-m", "512m"],
        &["/usr/bin/node", "-e", parent],
    );
    wait_for_node(&node);
    std::thread::sleep(Duration::from_secs(1));
    let state = server.wait_job(&server.capture_job(&node.name, ""));
    assert_eq!(state["state"], "failed", "{state}");
    assert!(
        state["error"]
            .as_str()
            .unwrap()
            .contains("runs 3 processes"),
        "{state}"
    );
    let processes = state["processes"].as_array().unwrap();
    assert!(
        processes
            .iter()
            .all(|p| p["runtime"] == "node" && p["uid"] == 1000),
        "{state}"
    );
    let worker = processes
        .iter()
        .find(|p| p["command"] == "/usr/bin/node /app/leak.js")
        .expect("a worker is listed");
    let pid = worker["pid"].as_u64().unwrap();
    assert_ne!(pid, 1);
    let state = server.wait_job(&server.capture_job(&node.name, &format!("{{\"pid\": {pid}}}")));
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(
        state["recipe"], "node-client",
        "noexec /tmp: the script runs on the container's own node"
    );
    let info = check_snapshot(&server, state["dump_id"].as_str().unwrap());
    assert_eq!(info["pid"], pid);
    assert_clean_and_closed(&node);
}

#[test]
fn an_inspector_that_is_already_open_is_used_and_left_open() {
    let server = Server::start(&[], &[]);
    let node = TestContainer::run_image(
        "ncap-inspect",
        &fixture_image("node"),
        &[],
        &["node", "--inspect=127.0.0.1:9229", "/app/leak.js"],
    );
    wait_for_node(&node);
    let state = server.wait_job(&server.capture_job(&node.name, ""));
    assert_eq!(state["state"], "done", "{state}");
    assert!(
        state["inspector"].as_str().unwrap().contains("left open"),
        "{state}"
    );
    check_snapshot(&server, state["dump_id"].as_str().unwrap());
    assert!(
        inspector_listening(&node),
        "an inspector the service opened itself stays open"
    );
}

#[test]
fn failures_say_why_and_store_nothing() {
    let server = Server::start(&[], &[]);
    // Another process holds 9229, where SIGUSR1 would open the inspector.
    let squatter = "require('net').createServer().listen(9229, '127.0.0.1')";
    let taken = TestContainer::run_image(
        "ncap-taken",
        &fixture_image("node"),
        &[],
        &[
            "sh",
            "-c",
            &format!("node -e \"{squatter}\" & exec node /app/leak.js"),
        ],
    );
    // The service keeps SIGUSR1 for itself: node then opens no inspector.
    let own_signal = "process.on('SIGUSR1', () => {}); require('/app/leak.js')";
    let disabled = TestContainer::run_image(
        "ncap-ownsig",
        &fixture_image("node"),
        &[],
        &["node", "-e", own_signal],
    );
    wait_for_node(&taken);
    wait_for_node(&disabled);
    std::thread::sleep(Duration::from_secs(1));

    let state = server.wait_job(&server.capture_job(&taken.name, ""));
    let leak = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["command"].as_str().unwrap().contains("leak.js"))
        .unwrap()
        .clone();
    let state =
        server.wait_job(&server.capture_job(&taken.name, &format!("{{\"pid\": {}}}", leak["pid"])));
    assert_eq!(state["state"], "failed", "{state}");
    let error = state["error"].as_str().unwrap();
    assert!(
        error.contains("9229") && error.contains("already taken"),
        "{error}"
    );

    let state = server.wait_job(&server.capture_job(&disabled.name, ""));
    assert_eq!(state["state"], "failed", "{state}");
    assert!(
        state["error"]
            .as_str()
            .unwrap()
            .contains("did not open its inspector"),
        "{state}"
    );

    assert!(
        server
            .get_json("/api/v1/dumps")
            .1
            .as_array()
            .unwrap()
            .is_empty(),
        "a failed capture stored a dump"
    );
}

#[test]
fn a_container_killed_mid_snapshot_fails_the_job_and_leaves_nothing() {
    let server = Server::start(&[], &[]);
    // Many small listeners: millions of heap objects, a snapshot that takes seconds.
    let node = TestContainer::run_image(
        "ncap-killed",
        &fixture_image("node"),
        &[
            "-e",
            "LEAK_KIB_PER_SEC=4096",
            "-e",
            "OBJECT_BYTES=64",
            "-m",
            "1g",
        ],
        &[],
    );
    wait_for_node(&node);
    std::thread::sleep(Duration::from_secs(6));
    let job = server.capture_job(&node.name, "");
    let started = Instant::now();
    loop {
        let (_, state) = server.get_json(&format!("/api/v1/jobs/{job}"));
        if state["stage"] == "dumping" || state["stage"] == "copying" {
            break;
        }
        assert_eq!(
            state["state"], "running",
            "the job ended before it could be interrupted: {state}"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    docker(&["kill", &node.name]);
    let state = server.wait_job(&job);
    assert_eq!(state["state"], "failed", "{state}");
    println!("killed mid-snapshot: {}", state["error"]);
    assert!(
        server
            .get_json("/api/v1/dumps")
            .1
            .as_array()
            .unwrap()
            .is_empty(),
        "a partial snapshot was stored"
    );
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir.join("dumps"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("heapsnapshot") || n.starts_with(".incoming"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "files left in the dump folder: {leftovers:?}"
    );
}
