//! One-click heap dump capture against real JVMs in real containers: the
//! image's jcmd, our helper in a JRE-only image, a non-root JVM, a read-only
//! root filesystem, a JVM that is not PID 1, two JVMs, and the failures
//! (noexec /tmp, attach disabled, no JVM, a container killed mid-capture);
//! a JVM leaking direct buffers, whose heap dump explains only part of its memory.

use std::time::{Duration, Instant};

use end2end::{docker, fixture_image, Server, TestContainer};
use serde_json::Value;

/// A small, slowly leaking JVM: dumps of a few MiB.
const QUIET: [&str; 4] = ["-e", "LEAK_KIB_PER_SEC=64", "-m", "512m"];
const SERVICE_JAR: &str = "/app/leak-service.jar";

/// Waits until the JVM in the container answers (it has started).
fn wait_for_jvm(container: &TestContainer) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let logs = std::process::Command::new("docker").args(["logs", &container.name]).output().unwrap();
        if String::from_utf8_lossy(&logs.stdout).contains("LeakService mode=") {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the JVM in {} did not start", container.name);
}

/// The stored dump downloads as a real HPROF and our parser reads it.
fn check_dump(server: &Server, dump_id: &str) {
    let response = server.request("GET", &format!("/api/v1/dumps/{dump_id}/download")).call().unwrap();
    let mut head = vec![0u8; 18];
    std::io::Read::read_exact(&mut response.into_reader(), &mut head).unwrap();
    assert_eq!(&head, b"JAVA PROFILE 1.0.2");
    let started = Instant::now();
    loop {
        let (status, analysis) = server.get_json(&format!("/api/v1/dumps/{dump_id}/analysis"));
        if status == 200 {
            assert!(analysis["summary"]["objects"].as_u64().unwrap() > 1000, "{}", analysis["summary"]);
            let classes: Vec<&str> = analysis["histogram"].as_array().unwrap().iter().filter_map(|h| h["class"].as_str()).collect();
            assert!(classes.contains(&"LeakService$Session"), "the leaking class is missing from the histogram");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "analysis not ready: {analysis}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Nothing of ours stays in the container's /tmp.
fn assert_clean(container: &TestContainer) {
    let listing = docker(&["exec", "-u", "0", &container.name, "ls", "-a", "/tmp"]);
    assert!(!listing.contains("leakscope"), "files left in the container: {listing}");
}

fn captured(server: &Server, container: &TestContainer, body: &str) -> Value {
    wait_for_jvm(container);
    let job = server.capture_job(&container.name, body);
    let state = server.wait_job(&job);
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["stage"], "done");
    check_dump(server, state["dump_id"].as_str().unwrap());
    assert_clean(container);
    state
}

#[test]
fn jdk_image_is_captured_with_its_own_jcmd_and_a_second_click_joins() {
    let server = Server::start(&[], &[]);
    let jvm = TestContainer::run_image("cap-jdk", &fixture_image("java"), &QUIET, &[]);
    wait_for_jvm(&jvm);
    let first = server.capture_job(&jvm.name, "");
    let second = server.capture_job(&jvm.name, "{}");
    assert_eq!(
        first, second,
        "a second capture while one runs must join it"
    );
    let state = server.wait_job(&first);
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["recipe"], "jcmd");
    let dump_id = state["dump_id"].as_str().unwrap();
    check_dump(&server, dump_id);
    assert_clean(&jvm);
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{dump_id}"));
    assert_eq!(info["container_name"], jvm.name.as_str());
    assert_eq!(info["trigger"], "manual");
    assert_eq!(info["pid"], 1);
    assert!(info["runtime"].as_str().unwrap().starts_with("java 17"), "{info}");
    assert!(info["capture_ms"].as_u64().is_some());
    assert_eq!(info["size_bytes"], state["bytes_total"]);
    let (_, listed) = server.get_json(&format!("/api/v1/dumps?container={}&runtime=java", jvm.name));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn jre_only_image_with_a_non_root_jvm_is_captured_with_our_helper() {
    let server = Server::start(&[], &[]);
    let mut options = QUIET.to_vec();
    options.extend(["--user", "1000:1000"]);
    let jvm = TestContainer::run_image("cap-jre", &fixture_image("java-jre"), &options, &[]);
    let state = captured(&server, &jvm, "");
    assert_eq!(state["recipe"], "agent");
}

#[test]
fn read_only_root_filesystem_streams_through_exec() {
    let server = Server::start(&[], &[]);
    let mut options = QUIET.to_vec();
    options.extend(["--read-only", "--tmpfs", "/tmp:exec"]);
    let jvm = TestContainer::run_image("cap-ro", &fixture_image("java-jre"), &options, &[]);
    captured(&server, &jvm, "");
}

#[test]
fn noexec_tmp_without_jcmd_uses_our_jar_on_the_containers_own_java() {
    let server = Server::start(&[], &[]);
    let mut options = QUIET.to_vec();
    // Docker's --tmpfs default is noexec: our static helper cannot run there.
    options.extend(["--read-only", "--tmpfs", "/tmp", "--user", "1000:1000"]);
    let jvm = TestContainer::run_image("cap-noexec", &fixture_image("java-jre"), &options, &[]);
    let state = captured(&server, &jvm, "");
    assert_eq!(state["recipe"], "java-attach");
}

#[test]
fn a_jvm_that_is_not_pid_1_is_found() {
    let server = Server::start(&[], &[]);
    let mut options = QUIET.to_vec();
    options.push("--init");
    let jvm = TestContainer::run_image("cap-init", &fixture_image("java-jre"), &options, &[]);
    let state = captured(&server, &jvm, "");
    assert_ne!(state["pid"], 1, "with --init the JVM is not PID 1: {state}");
}

#[test]
fn two_jvms_ask_for_a_choice_then_capture_the_chosen_one() {
    let server = Server::start(&[], &[]);
    let script = format!("java -cp {SERVICE_JAR} LeakService & java -cp {SERVICE_JAR} LeakService & wait");
    let jvm = TestContainer::run_image("cap-two", &fixture_image("java"), &QUIET, &["sh", "-c", &script]);
    wait_for_jvm(&jvm);
    std::thread::sleep(Duration::from_secs(2));
    let job = server.capture_job(&jvm.name, "");
    let state = server.wait_job(&job);
    assert_eq!(state["state"], "failed", "{state}");
    assert!(
        state["error"]
            .as_str()
            .unwrap()
            .contains("runs 2 processes"),
        "{state}"
    );
    // The shell that started them is listed too, with a memory map as all it offers.
    let processes = state["processes"].as_array().unwrap();
    let jvms: Vec<&serde_json::Value> = processes.iter().filter(|p| p["runtime"] == "java").collect();
    assert_eq!(jvms.len(), 2, "{state}");
    assert!(jvms.iter().all(|p| p["kinds"] == serde_json::json!(["heap-dump", "memory-map", "core"])), "{state}");
    let shell = processes.iter().find(|p| p["runtime"] == "native").expect("the shell is listed");
    assert_eq!(shell["kinds"], serde_json::json!(["memory-map", "core"]), "{state}");
    let chosen = jvms[1]["pid"].as_u64().unwrap();
    let state = captured(&server, &jvm, &format!("{{\"pid\": {chosen}}}"));
    assert_eq!(state["pid"], chosen);
}

#[test]
fn failures_say_why_and_leave_nothing_behind() {
    let server = Server::start(&[], &[]);
    let dumps_before = server.get_json("/api/v1/dumps").1.as_array().unwrap().len();

    // Attach switched off.
    let mut options = QUIET.to_vec();
    options.extend(["-e", "JAVA_TOOL_OPTIONS=-XX:+DisableAttachMechanism"]);
    let no_attach = TestContainer::run_image("cap-noattach", &fixture_image("java-jre"), &options, &[]);
    // No JVM at all.
    let no_jvm = TestContainer::run("cap-nojvm", &[], &["sh", "-c", "mkdir -p /tmp && exec sleep 600"]);
    // No /tmp at all (a bare scratch image).
    let no_tmp = TestContainer::run("cap-notmp", &[], &["sleep", "600"]);
    wait_for_jvm(&no_attach);

    let expectations = [
        (&no_attach, "DisableAttachMechanism"),
        (&no_jvm, "no process in this container offers a heap-dump"),
        (&no_tmp, "needs a writable /tmp"),
    ];
    for (container, expected) in expectations {
        // Every process offers a memory map: ask for a heap dump, which these cannot give.
        let job = server.capture_job(&container.name, "{\"kind\": \"heap-dump\"}");
        let state = server.wait_job(&job);
        assert_eq!(state["state"], "failed", "{state}");
        let error = state["error"].as_str().unwrap();
        assert!(error.contains(expected), "{}: expected '{expected}' in: {error}", container.name);
        if container.name != no_tmp.name {
            assert_clean(container);
        }
    }

    // Without a kind, the JVM is still the process the capture is about: it says why, and what else it can give.
    let state = server.wait_job(&server.capture_job(&no_attach.name, ""));
    let error = state["error"].as_str().unwrap_or_default();
    assert!(error.contains("DisableAttachMechanism") && error.contains("a memory map of it can be taken instead"), "{state}");

    // Stopped and unknown containers are refused at once.
    let stopped = TestContainer::run("cap-stopped", &[], &["true"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(server.start_capture(&stopped.name, "").0, 400);
    assert_eq!(
        server.start_capture("no-such-container-anywhere", "").0,
        404
    );
    assert_eq!(
        server.start_capture(&no_jvm.name, "{\"pid\": \"x\"}").0,
        400
    );

    let dumps_after = server.get_json("/api/v1/dumps").1.as_array().unwrap().len();
    assert_eq!(dumps_before, dumps_after, "a failed capture stored a dump");
}

#[test]
fn a_container_killed_mid_capture_fails_the_job_and_stores_nothing() {
    let server = Server::start(&[], &[]);
    // A fast leak so the dump is large enough to be caught in flight.
    let jvm = TestContainer::run_image(
        "cap-killed",
        &fixture_image("java-jre"),
        &["-e", "LEAK_KIB_PER_SEC=262144", "-e", "OBJECT_BYTES=65536", "-m", "1g"],
        &[],
    );
    wait_for_jvm(&jvm);
    std::thread::sleep(Duration::from_secs(3));
    let job = server.capture_job(&jvm.name, "");
    let started = Instant::now();
    loop {
        let (_, state) = server.get_json(&format!("/api/v1/jobs/{job}"));
        if state["stage"] == "dumping" || state["stage"] == "copying" {
            break;
        }
        assert_eq!(state["state"], "running", "the job ended before it could be interrupted: {state}");
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    docker(&["kill", &jvm.name]);
    let state = server.wait_job(&job);
    assert_eq!(state["state"], "failed", "{state}");
    let error = state["error"].as_str().unwrap();
    assert!(!error.is_empty());
    println!("killed mid-capture: {error}");
    assert!(server.get_json("/api/v1/dumps").1.as_array().unwrap().is_empty(), "a partial dump was stored");
    // The local folder, and the bucket's when dumps go to one.
    let leftovers: Vec<_> = [server.data_dir.join("dumps"), server.dump_folder()]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("hprof") || n.starts_with(".incoming"))
        .collect();
    assert!(leftovers.is_empty(), "files left in the dump folder: {leftovers:?}");
}

#[test]
fn not_enough_disk_fails_before_dumping_and_says_so() {
    // The server's data directory on a 40 MiB tmpfs; the JVM uses far more.
    let disk = end2end::SmallDisk::mount("40m");
    let server = Server::start_with_data(disk.path.join("leakscope"), &[], &[]);
    let jvm = TestContainer::run_image(
        "cap-nodisk",
        &fixture_image("java-jre"),
        &["-e", "MODE=warmup", "-e", "CACHE_MIB=96", "-e", "LEAK_KIB_PER_SEC=65536", "-m", "512m"],
        &[],
    );
    wait_for_jvm(&jvm);
    server.wait_until(
        Duration::from_secs(30),
        "the JVM's memory is sampled above 100 MiB",
        || {
            server
                .listed(&jvm.name)
                .and_then(|c| c["memory"]["usage_bytes"].as_u64())
                .is_some_and(|u| u > 100 << 20)
        },
    );
    let job = server.capture_job(&jvm.name, "");
    let state = server.wait_job(&job);
    assert_eq!(state["state"], "failed", "{state}");
    let error = state["error"].as_str().unwrap();
    assert!(error.contains("not enough disk space"), "{error}");
    assert_eq!(state["stage"], "locating", "it must fail before asking the JVM for a dump: {state}");
    assert_clean(&jvm);
}

/// Automatic capture: a labelled container that crosses 40 % of its limit is
/// dumped by itself, dumped again after it grows a tenth of its limit (so the
/// diff is ready), and never a third time; an unlabelled leaker beside it is
/// left alone because the global policy is off.
#[test]
fn a_labelled_container_is_dumped_at_a_share_of_its_limit_and_again_for_a_diff() {
    let server = Server::start(&["--auto-capture-spacing", "20s"], &[]);
    let java = fixture_image("java");
    let fast = ["-e", "LEAK_KIB_PER_SEC=2048", "-e", "OBJECT_BYTES=16384", "-m", "320m"];
    let labelled = TestContainer::run_image("auto-capture", &java, &[&fast[..], &["--label", "io.leakscope.capture=at-40%"]].concat(), &[]);
    let unlabelled = TestContainer::run_image("auto-none", &java, &fast, &[]);
    let auto_dumps = |name: &str| -> Vec<Value> {
        let (status, list) = server.get_json(&format!("/api/v1/dumps?container={name}"));
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().iter().filter(|d| d["trigger"] == "auto").cloned().collect()
    };
    let (_, page) = server.get(&format!("/containers/{}", labelled.name));
    assert!(page.contains("id=\"auto-capture\"") && page.contains("at-40%"), "the page does not say the container is dumped automatically");
    server.wait_until(Duration::from_secs(240), "two automatic dumps", || auto_dumps(&labelled.name).len() >= 2);
    let mut dumps = auto_dumps(&labelled.name);
    dumps.sort_by_key(|d| d["created_ms"].as_i64());
    let why: Vec<&str> = dumps.iter().map(|d| d["requested_by"].as_str().unwrap_or("")).collect();
    assert!(why[0].contains("% of its limit"), "{why:?}");
    assert!(why[1].contains("second dump for a diff"), "{why:?}");
    assert!(dumps[1]["created_ms"].as_i64().unwrap() - dumps[0]["created_ms"].as_i64().unwrap() >= 20_000, "spacing not kept");
    assert!(dumps[1]["size_bytes"].as_u64().unwrap() > dumps[0]["size_bytes"].as_u64().unwrap());
    // The diff of the two is there for the human who arrives.
    let (a, b) = (dumps[0]["id"].as_str().unwrap(), dumps[1]["id"].as_str().unwrap());
    server.wait_until(Duration::from_secs(120), "both analyses", || {
        [a, b].iter().all(|id| server.get_json(&format!("/api/v1/dumps/{id}")).1["analysis_state"] == "done")
    });
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{a}/diff/{b}"));
    assert_eq!(status, 200, "{diff}");
    let grown = diff["classes"].as_array().map(|c| c.iter().take(3).map(|r| r["class"].to_string()).collect::<Vec<_>>());
    assert!(diff.to_string().contains("LeakService$Session"), "the diff does not show the leaking class: {grown:?}");
    // No third dump, and nothing for the unlabelled container.
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(auto_dumps(&labelled.name).len(), 2, "a third automatic dump was taken");
    assert!(auto_dumps(&unlabelled.name).is_empty(), "an unlabelled container was dumped with the policy off");
}

#[test]
fn a_jvm_leaking_direct_buffers_is_shown_outside_its_heap_and_its_memory_maps_say_what_grew() {
    let server = Server::start(&[], &[]);
    let env = ["-e", "MODE=direct", "-e", "LEAK_KIB_PER_SEC=8192", "-e", "OBJECT_BYTES=1048576", "-m", "1g"];
    let jvm = TestContainer::run_image("cap-direct", &fixture_image("java"), &env, &[]);
    wait_for_jvm(&jvm);
    std::thread::sleep(Duration::from_secs(5));
    // The heap dump holds only the small ByteBuffer objects: the page says the rest is outside the heap.
    let state = server.wait_job(&server.capture_job(&jvm.name, ""));
    assert_eq!((state["state"].as_str(), state["kind"].as_str()), (Some("done"), Some("heap-dump")), "{state}");
    let dump = state["dump_id"].as_str().unwrap().to_string();
    let analysis = server.wait_analysis(&dump);
    assert!(analysis["histogram"].as_array().unwrap().iter().any(|h| h["class"] == "java.nio.DirectByteBuffer"), "the buffers' objects are in the heap");
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{dump}"));
    let working_set = info["working_set_bytes"].as_u64().expect("the record keeps the working set at capture");
    assert!(info["summary"]["reachable_bytes"].as_u64().unwrap() * 2 < working_set, "{info}");
    for page in [format!("/dumps/{dump}"), format!("/containers/{}", jvm.name)] {
        let (status, html) = server.get(&page);
        assert_eq!(status, 200);
        assert!(html.contains("id=\"outside-heap\"") && html.contains("direct buffers (NIO)"), "{page} says the heap explains only part");
    }
    // Two memory maps of the JVM: the diff names the native memory that grew.
    let pid = state["pid"].as_u64().unwrap();
    let body = format!("{{\"pid\": {pid}, \"kind\": \"memory-map\"}}");
    let first = server.wait_job(&server.capture_job(&jvm.name, &body));
    assert_eq!(first["state"], "done", "{first}");
    std::thread::sleep(Duration::from_secs(6));
    let second = server.wait_job(&server.capture_job(&jvm.name, &body));
    let (a, b) = (first["dump_id"].as_str().unwrap(), second["dump_id"].as_str().unwrap());
    server.wait_analysis(a);
    server.wait_analysis(b);
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{a}/diff/{b}"));
    assert_eq!(status, 200, "{diff}");
    let findings: Vec<&str> = diff["findings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(findings.iter().any(|f| f.starts_with("anonymous private memory grew") || f.starts_with("glibc malloc arenas grew")), "{findings:?}");
    // A memory map sees everything: no such note on its page.
    let (_, html) = server.get(&format!("/dumps/{b}"));
    assert!(!html.contains("id=\"outside-heap\""));
}
