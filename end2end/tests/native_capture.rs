//! Processes whatever their runtime, in real containers with nothing but the
//! program in a `FROM scratch` image: the C leaker gets a memory map whose
//! diff says `[heap] grew`; the Go leaker gets a heap profile from its own
//! net/http/pprof whose numbers equal `go tool pprof -top` on the downloaded
//! file (Debian's Go on the host), and a memory map when asked for one; a
//! core dump, asked for, opens in gdb with the leaking function on the stack.
//! Bad input (cut or damaged uploads, a pid that is gone) says why and keeps nothing wrong.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use end2end::{docker, fixture_image, Server, TestContainer};
use serde_json::Value;

fn histogram_row<'a>(analysis: &'a Value, class: &str) -> Option<&'a Value> {
    analysis["histogram"].as_array().unwrap().iter().find(|h| h["class"] == class)
}

fn download(server: &Server, dump: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    server.request("GET", &format!("/api/v1/dumps/{dump}/download")).call().unwrap().into_reader().read_to_end(&mut bytes).unwrap();
    bytes
}

/// Nothing of ours anywhere in the container's filesystem (listed with `docker export`, which needs nothing in the image).
fn assert_no_files_left(container: &TestContainer) {
    let listing = Command::new("docker").args(["export", &container.name]).output().unwrap();
    let names = Command::new("tar").arg("-t").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().and_then(|mut tar| {
        use std::io::Write;
        tar.stdin.take().unwrap().write_all(&listing.stdout)?;
        tar.wait_with_output()
    });
    let names = String::from_utf8_lossy(&names.unwrap().stdout).into_owned();
    assert!(!names.contains("leakscope"), "files of ours left in the container: {names}");
}

#[test]
fn a_native_program_gets_a_memory_map_and_the_diff_says_the_heap_grew() {
    let server = Server::start(&[], &[]);
    let native = TestContainer::run_image("mmap-native", &fixture_image("native"), &["-m", "512m", "-e", "LEAK_KIB_PER_SEC=4000"], &[]);
    std::thread::sleep(Duration::from_secs(3));
    let state = server.wait_job(&server.capture_job(&native.name, ""));
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!((state["kind"].as_str(), state["recipe"].as_str(), state["runtime"].as_str()), (Some("memory-map"), Some("memory-map"), Some("native")), "{state}");
    let listed = state["processes"].as_array().unwrap();
    assert!(listed.iter().any(|p| p["command"] == "/native-leak" && p["kinds"] == serde_json::json!(["memory-map", "core"]) && p["rss_bytes"].as_u64() > Some(1 << 20)), "{state}");
    let first = state["dump_id"].as_str().unwrap().to_string();
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{first}"));
    assert_eq!(info["format"], "memmap", "{info}");
    assert!(info["file_name"].as_str().unwrap().ends_with(".memmap"), "{info}");
    assert!(download(&server, &first).starts_with(b"LEAKSCOPE MEMMAP 1\npid 1\n"));
    let analysis = server.wait_analysis(&first);
    let heap = histogram_row(&analysis, "[heap] (malloc's main arena)").expect("the brk heap is a kind of its own").clone();
    assert!(heap["shallow_bytes"].as_u64().unwrap() > 4 << 20, "{heap}");
    assert!(histogram_row(&analysis, "mapped file").is_some(), "the program's own file is mapped");
    assert_no_files_left(&native);

    std::thread::sleep(Duration::from_secs(6));
    let later = server.wait_job(&server.capture_job(&native.name, "{\"kind\": \"memory-map\"}"));
    assert_eq!(later["state"], "done", "{later}");
    let second = later["dump_id"].as_str().unwrap();
    server.wait_analysis(second);
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{first}/diff/{second}"));
    assert_eq!(status, 200, "{diff}");
    let findings: Vec<&str> = diff["findings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(findings.iter().any(|f| f.starts_with("[heap] grew")), "{findings:?}");
    assert_eq!(diff["classes"][0]["class"], "[heap] (malloc's main arena)", "{}", diff["classes"][0]);
    // The pages: the dump reads as a memory map, the diff in plain words.
    let (status, page) = server.get(&format!("/dumps/{first}"));
    assert_eq!(status, 200);
    assert!(page.contains("Memory by kind") && page.contains("Download .memmap"), "the dump page speaks of mappings");
    let (status, page) = server.get(&format!("/dumps/{first}/diff/{second}"));
    assert_eq!(status, 200);
    assert!(page.contains("[heap] grew"), "the diff page says what grew");

    // A pid that is not there, a kind the program cannot give: refused with the reason.
    let gone = server.wait_job(&server.capture_job(&native.name, "{\"pid\": 4242}"));
    assert!(gone["error"].as_str().unwrap().contains("no process has pid 4242"), "{gone}");
    let no_profile = server.wait_job(&server.capture_job(&native.name, "{\"kind\": \"heap-profile\"}"));
    assert!(no_profile["error"].as_str().unwrap().contains("no process in this container offers a heap-profile"), "{no_profile}");
    let (status, refused) = server.start_capture(&native.name, "{\"kind\": \"everything\"}");
    let unknown = if status == 202 { server.wait_job(refused["job_id"].as_str().unwrap()) } else { refused };
    assert!(unknown.to_string().contains("unknown kind of capture 'everything'"), "{unknown}");
}

#[test]
fn a_program_that_hides_its_memory_map_from_its_own_user_is_read_from_beside_it() {
    let server = Server::start(&[], &[]);
    let hidden = TestContainer::run_image("mmap-hidden", &fixture_image("native"), &["-m", "256m", "-e", "NOT_DUMPABLE=1", "--user", "1000:1000"], &[]);
    std::thread::sleep(Duration::from_secs(2));
    let state = server.wait_job(&server.capture_job(&hidden.name, ""));
    assert_eq!((state["state"].as_str(), state["kind"].as_str()), (Some("done"), Some("memory-map")), "{state}");
    let analysis = server.wait_analysis(state["dump_id"].as_str().unwrap());
    assert!(histogram_row(&analysis, "[heap] (malloc's main arena)").is_some(), "the whole map was read");
    assert_no_files_left(&hidden);
}

/// gdb (Debian's, on the host) on a core: the backtraces of every thread.
fn gdb_backtraces(program: &Path, core: &Path) -> String {
    let output = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "info threads", "-ex", "thread apply all bt"])
        .arg(program)
        .arg(core)
        .output()
        .expect("gdb is installed (./dev test installs it)");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn a_core_dump_of_a_native_program_opens_in_gdb_with_its_leaking_function_on_the_stack() {
    let server = Server::start(&[], &[]);
    let native = TestContainer::run_image("core-native", &fixture_image("native"), &["-m", "512m", "-e", "LEAK_KIB_PER_SEC=4000", "--user", "1000:1000"], &[]);
    std::thread::sleep(Duration::from_secs(3));
    // Never the default: the plain capture is a memory map.
    let state = server.wait_job(&server.capture_job(&native.name, "{\"kind\": \"core\"}"));
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!((state["kind"].as_str(), state["recipe"].as_str()), (Some("core"), Some("core")), "{state}");
    assert!(state["inspector"].as_str().unwrap().contains("stopped every thread of pid 1 for"), "the page says what was done: {state}");
    let id = state["dump_id"].as_str().unwrap().to_string();
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{id}"));
    assert_eq!(info["format"], "core", "{info}");
    assert!(info["file_name"].as_str().unwrap().ends_with(".core"), "{info}");
    let paused = info["pause_ms"].as_u64().expect("the record says how long the process was stopped");
    assert!(paused < 30_000, "{info}");
    assert!(info["stored_bytes"].as_u64().unwrap() < info["size_bytes"].as_u64().unwrap(), "stored compressed: {info}");

    // gdb on the host opens the downloaded core with the program from the image.
    let dir = std::env::temp_dir().join(format!("leakscope-e2e-core-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let core = dir.join("native.core");
    std::fs::write(&core, download(&server, &id)).unwrap();
    let program = dir.join("native-leak");
    docker(&["cp", &format!("{}:/native-leak", native.name), program.to_str().unwrap()]);
    let said = gdb_backtraces(&program, &core);
    assert!(said.contains("leak_for_a_while") && said.contains("main"), "gdb names the leaking function: {said}");
    assert!(!said.contains("not a core dump") && !said.contains("Cannot access memory"), "{said}");

    // The server reads the core as the memory map taken while it was stopped.
    let analysis = server.wait_analysis(&id);
    assert_eq!(analysis["summary"]["format"], "core");
    let heap = histogram_row(&analysis, "[heap] (malloc's main arena)").expect("the brk heap is a kind of its own").clone();
    assert!(heap["shallow_bytes"].as_u64().unwrap() > 4 << 20, "{heap}");
    let (status, page) = server.get(&format!("/dumps/{id}"));
    assert_eq!(status, 200);
    assert!(page.contains("Download .core") && page.contains("gdb"), "the dump page says how to open it");

    // The process runs on, and nothing of ours is left in it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &native.name]).trim(), "true");
    let status = std::fs::read_to_string(format!("/proc/{}/status", docker(&["inspect", "-f", "{{.State.Pid}}", &native.name]).trim())).unwrap();
    assert!(status.lines().any(|l| l == "TracerPid:\t0"), "detached: {status}");
    assert_no_files_left(&native);

    // A debugger (the host's gdb) already traces the program: ptrace is refused, in words, and nothing is kept.
    let host_pid = docker(&["inspect", "-f", "{{.State.Pid}}", &native.name]).trim().to_string();
    let gdb = end2end::DebuggerAttached::to(&host_pid);
    let dumps = server.get_json("/api/v1/dumps").1.as_array().unwrap().len();
    let refused = server.wait_job(&server.capture_job(&native.name, "{\"kind\": \"core\"}"));
    drop(gdb);
    assert_eq!(refused["state"], "failed", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("ptrace was refused") && error.contains("debugger"), "{error}");
    assert_eq!(server.get_json("/api/v1/dumps").1.as_array().unwrap().len(), dumps);

    // A cut core is kept as uploaded and fails its analysis with the reason.
    let bytes = std::fs::read(&core).unwrap();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=cut.core", &bytes[..bytes.len() / 2]);
    assert_eq!(status, 201, "{body}");
    let cut = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    server.wait_until(Duration::from_secs(60), "the analysis ends", || server.get(&format!("/api/v1/dumps/{cut}/analysis")).0 != 202);
    let (status, answer) = server.get_json(&format!("/api/v1/dumps/{cut}/analysis"));
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("cut short"), "{answer}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_process_killed_during_its_core_dump_leaves_no_dump_and_no_helper() {
    // A dump folder without room for the raw core (768 MiB for 600 MB and the
    // helper's margin): the helper streams it, which takes seconds — time to kill.
    let disk = end2end::SmallDisk::mount("768m");
    let server = Server::start_with_data(disk.path.join("leakscope"), &[], &[]);
    // 600 MB allocated in 3 s, then held: a core that takes a few seconds to stream.
    let env = ["MODE=batch", "LEAK_KIB_PER_SEC=200000", "BATCH_SECS=3", "KEEP_PERCENT=100", "REST_SECS=600"];
    let mut args = vec!["-m", "2g"];
    for e in &env {
        args.extend(["-e", e]);
    }
    let native = TestContainer::run_image("core-killed", &fixture_image("native"), &args, &[]);
    std::thread::sleep(Duration::from_secs(5));
    let before = server.get_json("/api/v1/dumps").1.as_array().unwrap().len();
    let job = server.capture_job(&native.name, "{\"kind\": \"core\"}");
    server.wait_until(Duration::from_secs(60), "the core is being copied", || {
        let state = server.get_json(&format!("/api/v1/jobs/{job}")).1;
        assert_eq!(state["state"], "running", "the core ended before the process could be killed: {state}");
        state["bytes_copied"].as_u64() > Some(0)
    });
    docker(&["kill", &native.name]);
    let state = server.wait_job(&job);
    assert_eq!(state["state"], "failed", "{state}");
    let error = state["error"].as_str().unwrap();
    assert!(error.contains("stop") || error.contains("exited") || error.contains("killed"), "says what happened: {error}");
    assert_eq!(server.get_json("/api/v1/dumps").1.as_array().unwrap().len(), before, "nothing stored");
    let helpers = docker(&["ps", "-aq", "--filter", &format!("label=io.leakscope.helper.target={}", native.id)]);
    assert!(helpers.trim().is_empty(), "the helper container is removed: {helpers}");
    // No half-written file in the dump folder either.
    let staged: Vec<_> = std::fs::read_dir(server.data_dir.join("dumps"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".incoming-") || e.file_name().to_string_lossy().starts_with(".core-"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}

/// `go tool pprof -top` on a file: function -> (flat, cum) in bytes.
fn pprof_top(file: &Path) -> HashMap<String, (u64, u64)> {
    let output = Command::new("go")
        .args(["tool", "pprof", "-top", "-unit=B", "-nodefraction=0", "-nodecount=100000", "-sample_index=inuse_space"])
        .arg(file)
        .output()
        .expect("Go is installed (./dev test installs golang-go)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bytes = |v: &str| v.trim_end_matches('B').parse::<u64>().ok();
            (f.len() >= 6).then(|| Some((f[5].to_string(), (bytes(f[0])?, bytes(f[3])?)))).flatten()
        })
        .collect()
}

#[test]
fn a_go_program_gives_its_heap_profile_and_go_tool_pprof_agrees() {
    let server = Server::start(&[], &[]);
    let go = TestContainer::run_image("pprof-go", &fixture_image("go"), &["-m", "512m", "-e", "LEAK_PER_SECOND=40", "--user", "1000:1000"], &[]);
    std::thread::sleep(Duration::from_secs(3));
    let state = server.wait_job(&server.capture_job(&go.name, ""));
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!((state["kind"].as_str(), state["recipe"].as_str(), state["runtime"].as_str()), (Some("heap-profile"), Some("go-pprof"), Some("go")), "{state}");
    let program = state["processes"].as_array().unwrap().iter().find(|p| p["command"] == "/go-leak").expect("the program is listed").clone();
    assert_eq!(program["kinds"], serde_json::json!(["heap-profile", "memory-map", "core"]), "{program}");
    let first = state["dump_id"].as_str().unwrap().to_string();
    let (_, info) = server.get_json(&format!("/api/v1/dumps/{first}"));
    assert_eq!(info["format"], "pprof", "{info}");
    let runtime = info["runtime"].as_str().unwrap();
    assert!(runtime.starts_with("go1.") && runtime.contains("runtime.MemStats: HeapAlloc"), "{info}");
    assert_eq!(info["pause_ms"], 0, "nothing is stopped: {info}");

    // Our numbers are go tool pprof's on the very file a user downloads.
    let file = std::env::temp_dir().join(format!("leakscope-e2e-{first}.pprof"));
    std::fs::write(&file, download(&server, &first)).unwrap();
    let theirs = pprof_top(&file);
    let analysis = server.wait_analysis(&first);
    assert_eq!(analysis["summary"]["format"], "pprof");
    for function in ["main.rememberSession", "main.main"] {
        let ours = histogram_row(&analysis, function).unwrap_or_else(|| panic!("{function} is not in the histogram"));
        let (flat, cum) = theirs[function];
        assert_eq!((ours["shallow_bytes"].as_u64().unwrap(), ours["retained_bytes"].as_u64().unwrap()), (flat, cum), "{function}");
    }
    assert!(theirs["main.rememberSession"].0 > 1 << 20);
    std::fs::remove_file(&file).ok();
    let (status, page) = server.get(&format!("/dumps/{first}"));
    assert_eq!(status, 200);
    assert!(page.contains("In-use memory by function") && page.contains("main.rememberSession"), "the dump page reads as a profile");
    // A flame graph drawn by the server, with links into the call tree; in use and allocated by function.
    assert!(page.contains("id=\"flame\"") && page.contains(&format!("/dumps/{first}/flame.svg")), "the page shows the flame graph");
    assert!(page.contains("In use and allocated, by function"), "the page lists allocated space too");
    let (status, svg) = server.get(&format!("/dumps/{first}/flame.svg"));
    assert_eq!(status, 200);
    assert!(svg.starts_with("<svg") && svg.contains("main.rememberSession"), "the flame graph names the leaking function");
    let leak = analysis["profile_functions"].as_array().unwrap().iter().find(|f| f["function"] == "main.rememberSession").expect("a row per function").clone();
    assert!(leak["alloc_space_flat"].as_u64() >= leak["inuse_space_flat"].as_u64(), "{leak}");

    // A second profile: the diff puts the leaking function first.
    std::thread::sleep(Duration::from_secs(4));
    let later = server.wait_job(&server.capture_job(&go.name, ""));
    let second = later["dump_id"].as_str().unwrap();
    server.wait_analysis(second);
    let (_, diff) = server.get_json(&format!("/api/v1/dumps/{first}/diff/{second}"));
    let grown = diff["classes"].as_array().unwrap().iter().find(|c| c["class"] != "(all call paths)").unwrap();
    assert_eq!(grown["class"], "main.rememberSession", "{grown}");
    assert!(grown["shallow_bytes_delta"].as_i64().unwrap() > 1 << 20, "{grown}");

    // The same program's memory map, when asked for: a Go heap, not glibc arenas.
    let mapped = server.wait_job(&server.capture_job(&go.name, "{\"kind\": \"memory-map\"}"));
    assert_eq!(mapped["state"], "done", "{mapped}");
    let analysis = server.wait_analysis(mapped["dump_id"].as_str().unwrap());
    assert_eq!(analysis["summary"]["runtime"], "go");
    assert!(histogram_row(&analysis, "glibc malloc arena").is_none(), "Go's 64 MiB arenas are not glibc's");
    assert!(histogram_row(&analysis, "anonymous mapping").unwrap()["shallow_bytes"].as_u64().unwrap() > 1 << 20);
    assert_no_files_left(&go);
}

#[test]
fn cut_or_damaged_memory_maps_and_profiles_fail_their_analysis_with_the_reason() {
    let server = Server::start(&[], &[]);
    let native = TestContainer::run_image("mmap-bad", &fixture_image("native"), &["-m", "256m", "-e", "LEAK_KIB_PER_SEC=100"], &[]);
    std::thread::sleep(Duration::from_secs(1));
    let state = server.wait_job(&server.capture_job(&native.name, ""));
    let good = download(&server, state["dump_id"].as_str().unwrap());
    let text = String::from_utf8(good.clone()).unwrap();
    let (head, smaps) = text.split_once("== smaps\n").unwrap();
    let damaged = format!("{head}== smaps\n{}", smaps.replacen("Rss:", "Rss: many", 1));
    for (name, bytes, reason) in [("cut.memmap", &good[..good.len() / 2], "truncated"), ("damaged.memmap", damaged.as_bytes(), "bad Rss")] {
        let (status, body) = server.post_bytes(&format!("/api/v1/dumps?name={name}"), bytes);
        assert_eq!(status, 201, "the upload is kept: {body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
        // Asking for the analysis runs it; it ends in 422 with the reason.
        server.wait_until(Duration::from_secs(60), "the analysis ends", || server.get(&format!("/api/v1/dumps/{id}/analysis")).0 != 202);
        let (status, answer) = server.get_json(&format!("/api/v1/dumps/{id}/analysis"));
        assert_eq!(status, 422, "{answer}");
        assert!(answer.to_string().contains(reason), "{answer}");
        let (_, info) = server.get_json(&format!("/api/v1/dumps/{id}"));
        assert_eq!(info["analysis_state"], "failed", "{info}");
    }
    // Not a dump of any kind: refused at the door, nothing stored.
    let before = server.get_json("/api/v1/dumps").1.as_array().unwrap().len();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=x.bin", b"\x7fELF\x02\x01\x01 not a dump at all");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pprof heap profile"), "{body}");
    assert_eq!(server.get_json("/api/v1/dumps").1.as_array().unwrap().len(), before);
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &native.name]).trim(), "true");
}
