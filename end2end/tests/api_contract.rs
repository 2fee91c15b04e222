//! The API as a contract (`/api/v1/openapi.json`), checked against a live
//! server with a real engine, a container, analysed dumps and a report:
//! - every documented operation is routed (no 405, never the JSON 404 for
//!   unknown API paths), and the document's own schema checks pass;
//! - schemathesis (installed by `./dev test`) fuzzes every operation with an
//!   admin token: no 5xx, every status, content type and body as documented,
//!   no panic in the server log;
//! - the same with a viewer token: every state-changing request answers 403.
//!
//! The number of requests tried is printed and kept in `target/api-fuzz.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use end2end::{create_report, create_token, seed_history, upload_analysed_dumps, Server, TestContainer};
use serde_json::Value;

/// Examples per operation and phase; the fixed seed makes a failure reproducible
/// (`LEAKSCOPE_FUZZ_SEED` picks another).
const MAX_EXAMPLES: &str = "40";
const SEED: &str = "20261201";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

fn schemathesis() -> PathBuf {
    let st = std::env::var_os("LEAKSCOPE_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| "st".into());
    let ok = Command::new(&st).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "schemathesis not found at {} (./dev test installs it and sets LEAKSCOPE_SCHEMATHESIS)", st.display());
    st
}

fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

struct Fixture {
    server: Server,
    container: String,
    dumps: Vec<String>,
    report: String,
    object: String,
}

/// A documented path with real ids for reads; for changes, ids nobody has.
fn concrete(method: &str, path: &str, f: &Fixture) -> String {
    let nobody = "987654321";
    if method != "GET" {
        return ["{id}", "{a}", "{b}", "{object_id}"].iter().fold(path.to_string(), |p, k| p.replace(k, nobody));
    }
    let id = if path.starts_with("/api/v1/containers/") {
        f.container.clone()
    } else if path.starts_with("/api/v1/dumps/") {
        // The object below is from the later dump.
        f.dumps[1].clone()
    } else if path.starts_with("/api/v1/reports/") {
        f.report.clone()
    } else {
        // Users, tokens, jobs: ids nobody has.
        nobody.into()
    };
    let url = path.replace("{id}", &id).replace("{a}", &f.dumps[0]).replace("{b}", &f.dumps[1]).replace("{object_id}", &f.object);
    // The one required query parameter.
    if url.ends_with("/logs") { format!("{url}?at={}", leakscope_engine::now_ms()) } else { url }
}

/// The last `n` bytes of `text`, cut at a character boundary.
fn tail(text: &str, n: usize) -> &str {
    let start = text.len().saturating_sub(n);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    &text[start..]
}

struct Run {
    ok: bool,
    output: String,
    cases: u64,
}

/// A crash inside schemathesis itself (a Python traceback, no failed check) is
/// not a finding about the API: tried once more before it counts.
fn run_schemathesis(st: &Path, schema: &Path, config: &Path, base: &str, token: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let run = run_schemathesis_once(st, schema, config, base, token, args, env);
    let internal = !run.ok && run.output.contains("Traceback (most recent call last)") && !run.output.contains("= FAILURES =");
    if internal {
        eprintln!("schemathesis crashed inside itself; running it again:\n{}", tail(&run.output, 2000));
        return run_schemathesis_once(st, schema, config, base, token, args, env);
    }
    run
}

fn run_schemathesis_once(st: &Path, schema: &Path, config: &Path, base: &str, token: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let seed = std::env::var("LEAKSCOPE_FUZZ_SEED").unwrap_or_else(|_| SEED.into());
    let mut cmd = Command::new(st);
    // Its cache (`.schemathesis/`) goes beside the schema, not into the repo.
    cmd.current_dir(schema.parent().unwrap());
    cmd.arg("--no-color").arg("--config-file").arg(config).arg("run").arg(schema);
    cmd.args(["--url", base, "--header", &format!("Authorization: Bearer {token}"), "--seed", &seed, "--max-examples", MAX_EXAMPLES]);
    // One worker: hypothesis's caches are not safe across schemathesis's worker threads
    // (an internal KeyError was seen with two).
    cmd.args(["--workers", "1", "--request-timeout", "30", "--exclude-path", "/api/v1/stream"]);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run schemathesis");
    let mut output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if output.len() > 20_000 {
        // Tracebacks can quote whole source files; the summary is at the end.
        output = format!("…{}", tail(&output, 20_000));
    }
    // "Test cases:\n  1268 generated, 1268 passed"
    let cases = output
        .lines()
        .skip_while(|l| !l.starts_with("Test cases:"))
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Run { ok: out.status.success(), output, cases }
}

#[test]
fn the_api_keeps_its_documented_contract_under_fuzzing() {
    let st = schemathesis();
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("contract", &["-m", "256m"], &["sleep", "3600"]);
    // A second one without a limit, so both shapes of a container are answered.
    let other = TestContainer::run("contract-nolimit", &[], &["sleep", "3600"]);
    server.wait_until(Duration::from_secs(30), "listed", || server.listed(&c.name).is_some() && server.listed(&other.name).is_some());
    seed_history(&server, &c.name, 120);
    let dumps = upload_analysed_dumps(&server, &c.name, &[2_000, 20_000]);
    let (report, _) = create_report(&server, &c.name, 3600, &dumps);
    let (_, analysis) = server.get_json(&format!("/api/v1/dumps/{}/analysis", dumps[1]));
    let object = analysis["dominators"][0]["object_id"].as_str().expect("a dominator").to_string();
    let f = Fixture { server, container: c.name.clone(), dumps, report, object };
    let server = &f.server;

    // The document itself.
    let (status, doc) = server.get_json("/api/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let ops = operations(&doc);
    assert!(ops.len() >= 34, "{} operations", ops.len());

    // Document → router: every operation reaches its handler (state-changing
    // ones with ids nobody has, or bodies that do not parse, so nothing changes).
    for (method, path) in &ops {
        if path == "/api/v1/stream" {
            // Endless, so not fuzzed: its first event must be an Overview as documented.
            let response = server.request("GET", path).call().expect("stream");
            assert_eq!(response.status(), 200);
            assert_eq!(response.header("content-type"), Some("text/event-stream"));
            let mut reader = std::io::BufReader::new(response.into_reader());
            let mut line = String::new();
            while !line.starts_with("data: ") {
                line.clear();
                std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            }
            let overview: Value = serde_json::from_str(line.trim_start_matches("data: ")).unwrap();
            for field in ["engine", "containers", "updated_ms", "sample_interval_ms"] {
                assert!(!overview[field].is_null(), "stream event lacks {field}");
            }
            continue;
        }
        let url = concrete(method, path, &f);
        let (status, body) = end2end::answer(server.request(method, &url).send_bytes(b"{not json"), &url);
        assert_ne!(status, 405, "{method} {url} is documented but not routed for that method");
        assert!(!body.contains("no such API route"), "{method} {url} is documented but not routed: {body}");
        assert!(status < 500, "{method} {url}: {status} {body}");
        if path == "/api/v1/agents/connect" {
            // An agent's websocket: routed, and it wants an agent's credential, not a user's token.
            assert_eq!(status, 401, "{method} {url}: {status} {body}");
            assert!(body.contains("agent credential"), "{body}");
            continue;
        }
        if method == "GET" && !path.starts_with("/api/v1/jobs/") {
            assert!((200..300).contains(&status), "{method} {url}: {status} {body}");
        }
    }
    // The reference page, rendered on the server: every operation is on it without JavaScript.
    let (status, page) = server.get("/api");
    assert_eq!(status, 200);
    for (method, path) in &ops {
        assert!(page.contains(&format!("{method}</code> <code>{path}</code>")) || page.contains(path), "/api lacks {method} {path}");
    }
    let (_, admin_page) = server.get("/admin");
    assert!(admin_page.contains("href=\"/api\""), "the admin page links the reference");

    // Ids are ids, not paths: traversal and encoded slashes are refused or unknown, never served.
    for probe in [
        "/api/v1/dumps/..%2F..%2Fleakscope.db/download",
        "/api/v1/dumps/%2e%2e/download",
        "/api/v1/dumps/..%5Cleakscope.db",
        "/api/v1/reports/..%2F..%2F",
        "/api/v1/containers/..%2F..%2Fetc%2Fpasswd/logs?at=0",
        "/api/v1/dumps/%00/analysis",
        "/api/v1/dumps/%FF%FE/analysis",
    ] {
        let (status, body) = server.get(probe);
        assert!(matches!(status, 400 | 404), "{probe}: {status} {body}");
        assert!(serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string()), "{probe}: {body}");
    }
    // Every error under /api is JSON, axum's own rejections included.
    let (status, body) = server.get("/api/v1/containers/x/memory?step=banana");
    assert_eq!(status, 400);
    assert!(serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string()), "{body}");

    let work = server.data_dir.join("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let schema = work.join("openapi.json");
    std::fs::write(&schema, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    // Real ids half the time, so fuzzing reaches past the 404s (never for deletes).
    let list = |values: &[&str]| values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
    let config = format!(
        r#"
[dictionaries.containers]
values = [{containers}]
[dictionaries.dumps]
values = [{dumps}]
[dictionaries.reports]
values = [{reports}]
[dictionaries.objects]
values = [{objects}]

[[operations]]
include-path-regex = "^/api/v1/containers/"
parameters = {{ "path.id" = {{ dictionary = "containers", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/api/v1/dumps/"
include-method = "GET"
parameters = {{ "path.id" = {{ dictionary = "dumps", probability = 0.5 }}, "path.a" = {{ dictionary = "dumps", probability = 0.5 }}, "path.b" = {{ dictionary = "dumps", probability = 0.5 }}, "path.object_id" = {{ dictionary = "objects", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/api/v1/reports/"
include-method = "GET"
parameters = {{ "path.id" = {{ dictionary = "reports", probability = 0.5 }} }}
"#,
        containers = list(&[&f.container, &other.name]),
        dumps = list(&[&f.dumps[1], &f.dumps[0]]),
        reports = list(&[&f.report]),
        objects = list(&[&f.object]),
    );
    let config_path = work.join("schemathesis.toml");
    std::fs::write(&config_path, config).unwrap();

    // A viewer: schemathesis's own requests, and our check that each change answers 403
    // (but an agent's enrollment, which no user's role governs: its token is in the body).
    let viewer = create_token(&server.data_dir, "viewer", "fuzz-viewer");
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schemathesis/viewer_hooks.py");
    let viewer_run = run_schemathesis(
        &st,
        &schema,
        &config_path,
        &server.base,
        &viewer,
        &["--checks", "viewer_cannot_change_state,not_a_server_error", "--include-method-regex", "^(POST|PUT|PATCH|DELETE)$", "--exclude-path", "/api/v1/agents/enroll"],
        &[("SCHEMATHESIS_HOOKS", hooks.to_str().unwrap())],
    );
    assert!(viewer_run.ok && viewer_run.cases > 0, "viewer run failed:\n{}", viewer_run.output);

    // An admin: everything but revoking tokens (it would revoke its own)…
    let admin = create_token(&server.data_dir, "admin", "fuzz-admin");
    let admin_run = run_schemathesis(&st, &schema, &config_path, &server.base, &admin, &["--checks", CHECKS, "--exclude-path", "/api/v1/tokens/{id}"], &[]);
    assert!(admin_run.ok && admin_run.cases > 0, "admin run failed:\n{}", admin_run.output);
    // …then that, last, with a token of its own.
    let revoker = create_token(&server.data_dir, "admin", "fuzz-revoker");
    let revoke_run = run_schemathesis(&st, &schema, &config_path, &server.base, &revoker, &["--checks", CHECKS, "--include-path", "/api/v1/tokens/{id}"], &[]);
    assert!(revoke_run.ok && revoke_run.cases > 0, "token revocation run failed:\n{}", revoke_run.output);

    let log = server.log_text();
    assert!(!log.contains("panicked"), "the server panicked during fuzzing:\n{log}");
    let checker = create_token(&server.data_dir, "admin", "after-fuzz");
    let engine: Value = serde_json::from_str(
        &server.request("GET", "/api/v1/engine").set("Authorization", &format!("Bearer {checker}")).call().unwrap().into_string().unwrap(),
    )
    .unwrap();
    assert_eq!(engine["handler_panics"], 0, "{engine}");

    let summary = format!(
        "schemathesis {}: {} operations; admin token {} test cases (+{} revoking tokens), viewer token {} state-changing test cases, all passing ({CHECKS}; viewer: every change 403)\n",
        String::from_utf8_lossy(&Command::new(&st).arg("--version").output().unwrap().stdout).trim().trim_start_matches("st, version "),
        ops.len(),
        admin_run.cases,
        revoke_run.cases,
        viewer_run.cases,
    );
    print!("{summary}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/api-fuzz.txt");
    let _ = std::fs::write(target, summary);
}
