//! `leakscope check --dumps start-end --server URL --token T`: the CI gate's
//! evidence on real Java and Node.js leakers (the grown class named in every
//! output) and the report it leaves on a real Leakscope server (the link
//! opens; the public link only when asked). Minutes of waiting: runs beside
//! the other tests.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use end2end::{create_token, fixture_image, unique_name, Server};

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn check(args: &[&str]) -> std::process::Child {
    Command::new(end2end::leakscope_bin()).arg("check").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("leakscope check starts")
}

/// The link a check printed for a service: `SERVICE: report URL`.
fn report_link(output: &str, service: &str) -> String {
    let marker = format!("{service}: report ");
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(&marker).map(str::to_string))
        .unwrap_or_else(|| panic!("no report link for {service} in:\n{output}"))
}

#[test]
fn dumps_name_the_leaking_class_and_the_report_link_opens() {
    let server = Server::start(&[], &[]);
    // What a pipeline holds: an operator's token, not an admin's.
    let token = create_token(&server.data_dir, "operator", "ci");
    // The API the check uses refuses what it cannot draw, in words.
    let point = |t: i64| serde_json::json!({"time_ms": t, "working_set_bytes": 1, "working_set_min_bytes": 1, "working_set_max_bytes": 1, "usage_bytes": 1, "limit_bytes": null});
    let now = leakscope_engine::now_ms();
    let run = |series: serde_json::Value, dumps: serde_json::Value| {
        let body = serde_json::json!({"service": "svc", "container_name": "c", "from": end2end::rfc3339_ago(60), "to": end2end::rfc3339_ago(0), "series": series, "dumps": dumps});
        end2end::answer(server.request("POST", "/api/v1/check-reports").set("Content-Type", "application/json").send_string(&body.to_string()), "run report")
    };
    let (status, said) = run(serde_json::json!([point(now - 1000), point(now - 2000)]), serde_json::json!([]));
    assert_eq!(status, 400, "{said}");
    assert!(said.contains("sorted by time_ms"), "{said}");
    let (status, said) = run(serde_json::json!([point(now - 2000)]), serde_json::json!(["0123456789abcdef01234567"]));
    assert_eq!(status, 404, "{said}");
    let (status, said) = run(serde_json::json!([point(now - 2000), point(now - 1000)]), serde_json::json!([]));
    assert_eq!(status, 201, "{said}");

    let dir: PathBuf = std::env::temp_dir().join(unique_name("check-evidence"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).to_string_lossy().to_string();
    let (java_json, node_md, node_junit) = (file("java.json"), file("node.md"), file("node.xml"));
    let common = ["--memory", "512MiB", "--warmup", "30s", "--duration", "150s", "--dumps", "start-end", "--server", &server.base, "--token", &token];
    let java_image = fixture_image("java");
    let java = check(&[&["--image", java_image.as_str(), "--name", "java-dumps", "--env", "MODE=leak", "--env", "LEAK_KIB_PER_SEC=340", "--json", &java_json][..], &common[..]].concat());
    let node_image = fixture_image("node");
    let node = check(
        &[&["--image", node_image.as_str(), "--name", "node-dumps", "--env", "LEAK_KIB_PER_SEC=340", "--share", "--markdown", &node_md, "--junit", &node_junit][..], &common[..]].concat(),
    );
    // A token the server does not know, or one that may only read: refused before anything starts.
    let native = fixture_image("native");
    let viewer = create_token(&server.data_dir, "viewer", "ci-viewer");
    for (bad, status) in [("not-a-token", "401"), (viewer.as_str(), "403")] {
        let started = std::time::Instant::now();
        let refused = check(&["--image", &native, "--name", "bad-token", "--warmup", "5s", "--duration", "70s", "--server", &server.base, "--token", bad]).wait_with_output().unwrap();
        let said = text(&refused);
        assert_eq!(refused.status.code(), Some(2), "{said}");
        assert!(said.contains(&format!("the server answered {status}")), "{said}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the token is checked before the run");
    }
    let unreachable = check(&["--image", &native, "--warmup", "5s", "--duration", "70s", "--server", "http://127.0.0.1:9", "--token", "t"]).wait_with_output().unwrap();
    assert_eq!(unreachable.status.code(), Some(2), "{}", text(&unreachable));
    assert!(text(&unreachable).contains("--server http://127.0.0.1:9"), "{}", text(&unreachable));

    // The pipeline stops reading (`| head`, a killed log shipper): the check still judges and removes its container.
    let mut unread = check(&["--image", &native, "--name", "unread", "--env", "LEAK_KIB_PER_SEC=0", "--warmup", "5s", "--duration", "70s"]);
    drop(unread.stdout.take());
    drop(unread.stderr.take());

    let java = java.wait_with_output().unwrap();
    let said = text(&java);
    assert!(matches!(java.status.code(), Some(0 | 1)), "the check judged: {said}");
    assert!(said.contains("grew between the dumps:") && said.contains("LeakService$Session"), "the log names the leaking class: {said}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&java_json).unwrap()).unwrap();
    let dumps = &json["services"][0]["dumps"];
    assert!(dumps["start"]["id"].is_string() && dumps["end"]["id"].is_string(), "{dumps}");
    assert!(dumps["end"]["taken_ms"].as_i64() > dumps["start"]["taken_ms"].as_i64());
    let classes: Vec<&str> = dumps["grown"].as_array().unwrap().iter().filter_map(|c| c["class"].as_str()).collect();
    assert!(classes.contains(&"LeakService$Session"), "grown classes {classes:?}");
    // The judged window starts after the first dump, not at the warm-up's end.
    let judged_from = json["services"][0]["judged_from_ms"].as_i64().unwrap();
    assert!(judged_from >= dumps["start"]["taken_ms"].as_i64().unwrap(), "{json}");

    // The report on the server: its page opens for a team mate, the dumps were uploaded and analysed there.
    let link = report_link(&said, "java-dumps");
    assert_eq!(json["services"][0]["report_url"], link.as_str());
    let path = link.strip_prefix(&server.base).expect("the link is on the server");
    assert!(path.starts_with("/reports/"), "{link}");
    let (status, page) = server.get(path);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("java-dumps") && page.contains("LeakService$Session"), "the report shows the service and the diff");
    // Signed out, the page is not shown (the sign-in page is, after a redirect).
    let anonymous = ureq::AgentBuilder::new().redirects(0).build().get(&link).call();
    assert!(!matches!(anonymous, Ok(ref r) if r.status() == 200), "a report link without --share needs an account");
    let (_, reports) = server.get_json("/api/v1/reports");
    let listed = reports.as_array().unwrap().iter().find(|r| link.ends_with(r["slug"].as_str().unwrap_or("-"))).expect("the report is listed").clone();
    assert_eq!(listed["public"], false, "{listed}");
    let (_, uploaded) = server.get_json("/api/v1/dumps");
    let ours: Vec<_> = uploaded.as_array().unwrap().iter().filter(|d| d["service"] == "java-dumps").collect();
    assert_eq!(ours.len(), 2, "both dumps uploaded: {uploaded}");
    assert!(ours.iter().all(|d| d["analysis_state"] == "done" && d["requested_by"] == "token:ci"), "{ours:?}");

    let node = node.wait_with_output().unwrap();
    let said = text(&node);
    assert!(matches!(node.status.code(), Some(0 | 1)), "the check judged: {said}");
    assert!(said.contains("(closure)"), "the leaking listeners' closures are named: {said}");
    let markdown = std::fs::read_to_string(&node_md).unwrap();
    assert!(markdown.contains("| Grew between the heap dumps |") && markdown.contains("`(closure)`"), "{markdown}");
    // --share: the printed link is the public one and opens without an account.
    let link = report_link(&said, "node-dumps");
    assert!(link.starts_with(&format!("{}/r/", server.base)), "{link}");
    assert!(markdown.contains(&format!("Report: <{link}>")), "{markdown}");
    assert!(std::fs::read_to_string(&node_junit).unwrap().contains(&format!("<property name=\"report\" value=\"{link}\"/>")));
    let public = ureq::get(&link).call().expect("the public link opens without an account");
    let page = public.into_string().unwrap();
    assert!(page.contains("node-dumps") && page.contains("(closure)"), "the public page shows the run");

    let unread = unread.wait().unwrap();
    assert_eq!(unread.code(), Some(0), "a closed pipe neither kills nor fails the check");
    let left = end2end::docker(&["ps", "-a", "--filter", "label=io.leakscope.check", "--format", "{{.Names}}"]);
    assert!(!left.lines().any(|name| name.starts_with("leakscope-check-unread-")), "left behind: {left}");
    let _ = std::fs::remove_dir_all(&dir);
}
