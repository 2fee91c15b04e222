//! One-click heap snapshots of real CPython processes in real containers, with
//! nothing installed in the image: Debian 12's python3.11, Debian 13's 3.13,
//! Debian 11's 3.9 and Debian 14's 3.14 (python3-minimal; 3.14 through its
//! remote-debugging interface, PEP 768), as root and as a non-root user on a read-only root with two interpreters, a
//! request loop against the service during the capture, the diff of two
//! captures by object id, and the failures (ptrace refused because a debugger
//! holds the process, an interpreter busy in a C call past the timeout, the
//! container killed mid-walk) — each says why and leaves nothing behind.

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use end2end::{docker, fixture_image, Server, TestContainer};
use serde_json::Value;

/// A service leaking `Entry` objects into a module-level dict, answering on :8000 from a thread.
const SERVICE: &str = r#"
import socket, threading, time
CACHE = {}
class Entry:
    def __init__(self, key, payload):
        self.key = key
        self.payload = payload
def serve():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8000))
    s.listen(64)
    while True:
        c, _ = s.accept()
        c.sendall(b"%d\n" % len(CACHE))
        c.close()
threading.Thread(target=serve, daemon=True).start()
print("python-service ready", flush=True)
n = 0
while True:
    for _ in range(PER_TICK):
        CACHE["k%d" % n] = Entry(n, b"x" * 512)
        n += 1
    time.sleep(0.05)
"#;

fn service(per_tick: u32) -> String {
    SERVICE.replace("PER_TICK", &per_tick.to_string())
}

fn wait_for_log(container: &TestContainer, text: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let logs = std::process::Command::new("docker").args(["logs", &container.name]).output().unwrap();
        if String::from_utf8_lossy(&logs.stdout).contains(text) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{text:?} never appeared in the logs of {}", container.name);
}

fn ip_of(container: &TestContainer) -> String {
    docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &container.name]).trim().to_string()
}

/// No helper container of ours is left, nothing of ours in the container's
/// /tmp, and no System V segment (our bootstrap page) still mapped in `pid`.
fn assert_nothing_left(container: &TestContainer, pid: u32) {
    let helpers = helpers_of(container);
    assert!(helpers.is_empty(), "helper containers left: {helpers}");
    let tmp = docker(&["exec", &container.name, "ls", "-a", "/tmp"]);
    assert!(!tmp.contains("leakscope"), "files left in /tmp: {tmp}");
    let maps = docker(&["exec", &container.name, "cat", &format!("/proc/{pid}/maps")]);
    assert!(!maps.contains("SYSV"), "our page is still mapped: {}", maps.lines().filter(|l| l.contains("SYSV")).collect::<Vec<_>>().join("\n"));
}

/// Our helper containers that work on `container` (other tests run beside this one).
fn helpers_of(container: &TestContainer) -> String {
    let id = docker(&["inspect", "-f", "{{.Id}}", &container.name]).trim().to_string();
    docker(&["ps", "-aq", "--filter", &format!("label=io.leakscope.helper.target={id}")]).trim().to_string()
}

fn analysis_of(server: &Server, dump_id: &str) -> Value {
    server.wait_analysis(dump_id)
}

fn entries(analysis: &Value) -> u64 {
    analysis["histogram"].as_array().unwrap().iter().find(|h| h["class"] == "__main__.Entry").map(|h| h["instances"].as_u64().unwrap()).unwrap_or(0)
}

/// Connects to the service again and again until stopped; counts answers and errors.
fn request_loop(address: String, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>, failed: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let ok = TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(10)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut answer = String::new();
                s.read_to_string(&mut answer)?;
                Ok(answer.trim().parse::<u64>().is_ok())
            });
            match ok {
                Ok(true) => answered.fetch_add(1, Ordering::Relaxed),
                _ => failed.fetch_add(1, Ordering::Relaxed),
            };
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn python_is_captured_with_nothing_in_the_image_and_the_leak_is_named() {
    let server = Server::start(&[], &[]);
    let python = TestContainer::run_image("pycap", &fixture_image("python"), &["-m", "512m"], &["python3", "-c", &service(100)]);
    wait_for_log(&python, "python-service ready");
    std::thread::sleep(Duration::from_secs(2));
    let (stop, answered, failed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let requests = request_loop(format!("{}:8000", ip_of(&python)), stop.clone(), answered.clone(), failed.clone());

    let first = server.capture_job(&python.name, "");
    let second = server.capture_job(&python.name, "{}");
    assert_eq!(first, second, "a second click joins the running capture");
    let state = server.wait_job(&first);
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["runtime"], "python");
    assert_eq!(state["recipe"], "python-walk");
    assert!(state["inspector"].as_str().unwrap().contains("ptrace stopped the main thread for"), "{state}");
    let dump = state["dump_id"].as_str().unwrap().to_string();
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{dump}"));
    assert_eq!(info["format"], "python", "{info}");
    assert!(info["runtime"].as_str().unwrap().starts_with("python 3.11"), "{info}");
    assert!(info["pause_ms"].as_u64().is_some(), "the record keeps the pause: {info}");
    assert!(info["file_name"].as_str().unwrap().ends_with(".pyheap"), "{info}");
    let mut head = vec![0u8; 19];
    server.request("GET", &format!("/api/v1/dumps/{dump}/download")).call().unwrap().into_reader().read_exact(&mut head).unwrap();
    assert_eq!(&head, b"LEAKSCOPE PYHEAP 1\n");

    let analysis = analysis_of(&server, &dump);
    assert_eq!(analysis["summary"]["runtime"], "python", "{}", analysis["summary"]);
    let before = entries(&analysis);
    assert!(before > 1000, "the leaked entries are counted: {before}");
    let suspect = analysis["suspects"][0]["description"].as_str().unwrap();
    assert!(suspect.starts_with("module __main__.CACHE -> dict[") && suspect.contains("Entry retaining"), "{suspect}");
    assert_nothing_left(&python, 1);

    // A second capture of the same process: objects compare by address.
    std::thread::sleep(Duration::from_secs(2));
    let later = server.wait_job(&server.capture_job(&python.name, ""));
    assert_eq!(later["state"], "done", "{later}");
    let later_dump = later["dump_id"].as_str().unwrap();
    assert!(entries(&analysis_of(&server, later_dump)) > before);
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{dump}/diff/{later_dump}"));
    assert_eq!(status, 200, "{diff}");
    let added = diff["objects"].as_array().expect("two captures of one process compare by object id");
    let entry = added.iter().find(|c| c["class"] == "__main__.Entry").expect("Entry objects were added");
    assert!(entry["new_objects"].as_u64().unwrap() > 0, "{entry}");
    assert_nothing_left(&python, 1);

    // The service answered all along.
    stop.store(true, Ordering::Relaxed);
    requests.join().unwrap();
    assert!(answered.load(Ordering::Relaxed) > 20, "answered {}", answered.load(Ordering::Relaxed));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during the capture");
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &python.name]).trim(), "true");
}

/// Automatic capture is the same for Python as for Java: a labelled service that crosses
/// its share of the limit is snapshotted, then once more for a diff, with nobody clicking.
#[test]
fn a_labelled_python_service_is_snapshotted_automatically_and_again_for_a_diff() {
    let server = Server::start(&["--auto-capture-spacing", "20s"], &[]);
    let python = TestContainer::run_image("pyauto", &fixture_image("python"), &["-m", "256m", "--label", "io.leakscope.capture=at-40%"], &["python3", "-c", &service(200)]);
    let auto_dumps = || -> Vec<Value> {
        let (status, list) = server.get_json(&format!("/api/v1/dumps?container={}", python.name));
        assert_eq!(status, 200, "{list}");
        let mut dumps: Vec<Value> = list.as_array().unwrap().iter().filter(|d| d["trigger"] == "auto").cloned().collect();
        dumps.sort_by_key(|d| d["created_ms"].as_i64());
        dumps
    };
    server.wait_until(Duration::from_secs(240), "two automatic snapshots", || auto_dumps().len() >= 2);
    let dumps = auto_dumps();
    assert!(dumps.iter().all(|d| d["format"] == "python"), "{dumps:?}");
    assert!(dumps[0]["requested_by"].as_str().unwrap_or("").contains("% of its limit"), "{dumps:?}");
    assert!(dumps[1]["requested_by"].as_str().unwrap_or("").contains("second dump for a diff"), "{dumps:?}");
    let (a, b) = (dumps[0]["id"].as_str().unwrap(), dumps[1]["id"].as_str().unwrap());
    let suspect = analysis_of(&server, b)["suspects"][0]["description"].as_str().unwrap_or("").to_string();
    assert!(suspect.starts_with("module __main__.CACHE -> dict["), "{suspect}");
    analysis_of(&server, a);
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{a}/diff/{b}"));
    assert_eq!(status, 200, "{diff}");
    let added = diff["objects"].as_array().expect("two snapshots of one process compare by object id");
    assert!(added.iter().any(|c| c["class"] == "__main__.Entry" && c["new_objects"].as_u64() > Some(0)), "{diff}");
    assert_nothing_left(&python, 1);
}

#[test]
fn a_non_root_read_only_container_with_two_interpreters_lists_them_and_captures_the_chosen_one() {
    let server = Server::start(&[], &[]);
    let quiet = "import time\nwhile True: time.sleep(0.2)";
    let script = format!("python3 -c '{quiet}' & python3 -c \"$SERVICE\" & wait");
    let both = TestContainer::run_image(
        "pycap-ro",
        &fixture_image("python"),
        &["--user", "1000:1000", "--read-only", "-e", &format!("SERVICE={}", service(50))],
        &["sh", "-c", &script],
    );
    wait_for_log(&both, "python-service ready");
    let state = server.wait_job(&server.capture_job(&both.name, ""));
    assert_eq!(state["state"], "failed", "two interpreters: the user chooses: {state}");
    let processes = state["processes"].as_array().unwrap();
    let pythons: Vec<&Value> = processes.iter().filter(|p| p["runtime"] == "python").collect();
    assert_eq!(pythons.len(), 2, "{processes:?}");
    assert!(pythons.iter().all(|p| p["uid"] == 1000 && p["pid"] != 1), "{pythons:?}");
    let chosen = pythons.iter().find(|p| p["command"].as_str().unwrap().contains("CACHE")).unwrap();
    let pid = chosen["pid"].as_u64().unwrap() as u32;
    let state = server.wait_job(&server.capture_job(&both.name, &format!("{{\"pid\": {pid}}}")));
    assert_eq!(state["state"], "done", "{state}");
    let analysis = analysis_of(&server, state["dump_id"].as_str().unwrap());
    assert!(entries(&analysis) > 100, "{}", analysis["histogram"]);
    let helpers = helpers_of(&both);
    assert!(helpers.is_empty(), "helper containers left: {helpers}");
    let maps = docker(&["exec", &both.name, "cat", &format!("/proc/{pid}/maps")]);
    assert!(!maps.contains("SYSV"), "our page is still mapped");
}

#[test]
fn refusals_waits_and_a_killed_container_say_why_store_nothing_and_leave_nothing() {
    let server = Server::start(&["--python-walk-timeout", "4s"], &[]);

    // A debugger (the host's gdb) already traces the interpreter: ptrace is refused.
    let traced = TestContainer::run_image("pycap-traced", &fixture_image("python"), &[], &["python3", "-c", &service(10)]);
    wait_for_log(&traced, "python-service ready");
    let host_pid = docker(&["inspect", "-f", "{{.State.Pid}}", &traced.name]).trim().to_string();
    let gdb = end2end::DebuggerAttached::to(&host_pid);
    let state = server.wait_job(&server.capture_job(&traced.name, ""));
    drop(gdb);
    assert_eq!(state["state"], "failed", "{state}");
    let error = state["error"].as_str().unwrap();
    assert!(error.contains("ptrace was refused") && error.contains("debugger"), "{error}");

    // The main thread sleeps in a C call past the timeout: the capture gives up.
    // Below 3.14 the queued walk, emptied, runs and goes when the sleep returns;
    // on 3.14 the request is taken back, so the interpreter finds nothing to run
    // (else it would print that our script path cannot be opened).
    let sleeper = "import time\nKEEP = [bytes(100) for _ in range(1000)]\nprint('sleeping', flush=True)\ntime.sleep(12)\nprint('woke', flush=True)\ntime.sleep(3600)";
    for image in ["python", "python314"] {
        let busy = TestContainer::run_image(&format!("pycap-busy-{image}"), &fixture_image(image), &[], &["python3", "-c", sleeper]);
        wait_for_log(&busy, "sleeping");
        let state = server.wait_job(&server.capture_job(&busy.name, ""));
        assert_eq!(state["state"], "failed", "{state}");
        assert!(state["error"].as_str().unwrap().contains("did not start the walk within 4 s"), "{state}");
        wait_for_log(&busy, "woke");
        std::thread::sleep(Duration::from_secs(1));
        assert_nothing_left(&busy, 1);
        let logs = all_logs(&busy);
        assert!(!logs.contains("debugger") && !logs.contains("Traceback"), "the abandoned walk said something: {logs}");
        assert_eq!(docker(&["top", &busy.name]).lines().count(), 2);
    }

    // Killed mid-walk: a heap of a million objects walks for seconds.
    let big = "import time\nBIG = [('item', n, str(n)) for n in range(1000000)]\nprint('built', flush=True)\nwhile True: time.sleep(0.1)";
    let killed = TestContainer::run_image("pycap-killed", &fixture_image("python"), &["-m", "1g"], &["python3", "-c", big]);
    wait_for_log(&killed, "built");
    let slow = Server::start(&[], &[]);
    let job = slow.capture_job(&killed.name, "");
    let started = Instant::now();
    loop {
        let (_, state) = slow.get_json(&format!("/api/v1/jobs/{job}"));
        if state["stage"] == "copying" {
            break;
        }
        assert_eq!(state["state"], "running", "the job ended before it could be interrupted: {state}");
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    docker(&["kill", &killed.name]);
    let state = slow.wait_job(&job);
    assert_eq!(state["state"], "failed", "{state}");
    println!("killed mid-walk: {}", state["error"]);

    for s in [&server, &slow] {
        assert!(s.get_json("/api/v1/dumps").1.as_array().unwrap().is_empty(), "a failed capture stored a dump");
    }
    let started = Instant::now();
    while !helpers_of(&killed).is_empty() || !helpers_of(&traced).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "helper containers left");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The python fixture (a module-level dict that nothing evicts) on another
/// Debian's python3-minimal, with tracemalloc tracing from the start; `options`
/// go to `docker run`. Returns the finished job.
fn fixture_on(image: &str, version: &str, options: &[&str]) -> Value {
    let server = Server::start(&[], &[]);
    let mut run = vec!["-e", "LEAK_KIB_PER_SEC=400", "-e", "PYTHONTRACEMALLOC=1"];
    run.extend_from_slice(options);
    let python = TestContainer::run_image(&format!("pycap-{image}"), &fixture_image(image), &run, &[]);
    wait_for_log(&python, "python-leak rate=");
    std::thread::sleep(Duration::from_secs(2));
    let state = server.wait_job(&server.capture_job(&python.name, ""));
    assert_eq!(state["state"], "done", "{state}");
    let dump = state["dump_id"].as_str().unwrap();
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{dump}"));
    assert!(info["runtime"].as_str().unwrap().starts_with(&format!("python {version}")), "{info}");
    assert_eq!(info["host"], server.get_json("/api/v1/hosts").1[0]["name"], "{info}");
    let analysis = analysis_of(&server, dump);
    let suspect = analysis["suspects"][0]["description"].as_str().unwrap();
    assert!(suspect.contains("module __main__._CACHE -> dict[") && suspect.contains("tuple retaining"), "{suspect}");
    // tracemalloc's own view comes with it: the line that makes the cached bytes.
    let top = &analysis["allocation_sites"][0];
    assert_eq!(top["file"], "/app/leak.py", "{}", analysis["allocation_sites"]);
    assert!(top["size_bytes"].as_u64().unwrap() > 100 << 10, "{top}");
    assert_nothing_left(&python, 1);
    // The service goes on, and said nothing about us; no process of ours
    // (such as the holder of a 3.14 script) is left in its PID namespace.
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &python.name]), "true");
    let top = docker(&["top", &python.name]);
    assert_eq!(top.lines().count(), 2, "processes besides the service: {top}");
    let logs = all_logs(&python);
    assert!(!logs.contains("Traceback") && !logs.contains("Error"), "the service printed: {logs}");
    state
}

#[test]
fn cpython_3_14_from_debian_14_is_captured_through_its_remote_debugging_interface() {
    // As root: no thread is stopped (the job says so), no ptrace page is mapped.
    let state = fixture_on("python314", "3.14", &[]);
    let how = state["inspector"].as_str().unwrap();
    assert!(how.contains("PEP 768") && how.contains("no thread was stopped"), "{state}");
    // As a user without privileges on a read-only root: the walk is handed over
    // as a file only that user can open, and nothing is written into the container.
    let state = fixture_on("python314", "3.14", &["--user", "1000:1000", "--read-only"]);
    assert!(state["inspector"].as_str().unwrap().contains("PEP 768"), "{state}");
}

#[test]
fn cpython_3_14_started_with_remote_debugging_disabled_is_left_alone() {
    let server = Server::start(&[], &[]);
    let python = TestContainer::run_image(
        "pycap-nodebug",
        &fixture_image("python314"),
        &["-e", "LEAK_KIB_PER_SEC=100", "-e", "PYTHON_DISABLE_REMOTE_DEBUG=1"],
        &[],
    );
    wait_for_log(&python, "python-leak rate=");
    let state = server.wait_job(&server.capture_job(&python.name, ""));
    assert_eq!(state["state"], "failed", "{state}");
    let error = state["error"].as_str().unwrap();
    assert!(error.contains("remote debugging disabled") && error.contains("captured nothing"), "{error}");
    assert!(server.get_json("/api/v1/dumps").1.as_array().unwrap().is_empty(), "a refused capture stored a dump");
    assert_nothing_left(&python, 1);
    let logs = all_logs(&python);
    assert!(!logs.contains("Traceback") && !logs.contains("debugger script"), "the service saw our request: {logs}");
}

/// What the container printed on stdout and stderr.
fn all_logs(container: &TestContainer) -> String {
    let out = std::process::Command::new("docker").args(["logs", &container.name]).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn cpython_3_13_from_debian_13_is_captured_too() {
    fixture_on("python313", "3.13", &[]);
}

#[test]
fn cpython_3_9_from_debian_11_is_captured_too() {
    // 3.9 and 3.10 keep a real __dict__ per instance (no managed dicts).
    fixture_on("python39", "3.9", &[]);
}
