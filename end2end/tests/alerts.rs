//! Alerts and export on a real engine: `/metrics` read by Debian's promtool
//! and scraped by a real Prometheus (which also runs every query of the
//! Grafana dashboard in the repo), and webhooks that get exactly one message
//! per limit crossing and OOM kill, with every delivery in the audit log.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{create_token, fixture_image, free_port, Server, TestContainer, WebhookReceiver};

struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second with the bearer token from a file, as a team would configure it.
    fn start(target: &str, token: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("leakscope-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), token).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: leakscope\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
            dir.join("token").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("prometheus.log")).unwrap()))
            .spawn()
            .expect("prometheus is installed (./dev test installs Debian's package)");
        Prometheus { child, dir, base: format!("http://127.0.0.1:{port}") }
    }

    /// An instant query's `data.result`, or the error Prometheus gave.
    fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let answer = ureq::get(&format!("{}/api/v1/query", self.base)).query("query", promql).call();
        let body: serde_json::Value = match answer {
            Ok(r) => r.into_json().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(_, r)) => r.into_json().map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        if body["status"] != "success" {
            return Err(format!("{promql}: {body}"));
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

#[test]
fn metrics_are_prometheus_text_that_a_real_prometheus_scrapes() {
    // The host gets the name given with its address (`--docker-host NAME=URL`).
    let server = Server::start(&["--docker-host", "ops-box=unix:///var/run/docker.sock"], &[]);
    let limited = TestContainer::run("metrics-limited", &["-m", "64m"], &["sleep", "600"]);
    let unlimited = TestContainer::run("metrics-unlimited", &[], &["sleep", "600"]);
    server.wait_until(Duration::from_secs(60), "both containers have a reading", || {
        [&limited, &unlimited].iter().all(|c| server.listed(&c.name).is_some_and(|l| !l["memory"].is_null()))
    });
    let host = server.listed(&limited.name).unwrap()["host"].as_str().unwrap().to_string();
    assert_eq!(host, "ops-box");
    let (_, on_host) = server.get_json("/api/v1/containers?host=ops-box");
    assert!(on_host.as_array().unwrap().iter().any(|c| c["name"] == limited.name.as_str()), "{on_host}");
    let (_, elsewhere) = server.get_json("/api/v1/containers?host=another-box");
    assert_eq!(elsewhere, serde_json::json!([]));
    let (status, hosts) = server.get_json("/api/v1/hosts");
    assert_eq!(status, 200);
    assert_eq!(hosts[0]["name"], host.as_str(), "{hosts}");
    assert_eq!(hosts[0]["connected"], true);
    assert_eq!(hosts[0]["via"], "direct");
    assert!(hosts[0]["last_seen_ms"].as_i64().unwrap() > 0);

    // A scraper without a token hears 401 (not the sign-in page); a viewer's token reads it.
    let anonymous = ureq::get(&server.url("/metrics")).call();
    assert!(matches!(anonymous, Err(ureq::Error::Status(401, _))), "{anonymous:?}");
    let viewer = create_token(&server.data_dir, "viewer", "prometheus");
    let text = ureq::get(&server.url("/metrics")).set("Authorization", &format!("Bearer {viewer}")).call().unwrap().into_string().unwrap();
    let line = |metric: &str, name: &str| text.lines().find(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&format!("container=\"{name}\""))).map(str::to_string);
    let limit_line = line("leakscope_container_limit_bytes", &limited.name).unwrap_or_else(|| panic!("no limit for {}:\n{text}", limited.name));
    assert!(limit_line.ends_with(" 67108864"), "{limit_line}");
    assert!(limit_line.contains(&format!("host=\"{host}\"")), "{limit_line}");
    assert!(line("leakscope_container_limit_bytes", &unlimited.name).is_none(), "a container without a limit has no limit series");
    assert!(line("leakscope_container_limit_set", &unlimited.name).unwrap().ends_with(" 0"));
    assert!(line("leakscope_container_working_set_bytes", &limited.name).is_some());
    assert!(line("leakscope_container_oom_kills_total", &limited.name).unwrap().ends_with(" 0"));
    assert!(text.contains(&format!("leakscope_host_connected{{host=\"{host}\",via=\"direct\"}} 1")), "{text}");

    // Debian's promtool: the exposition parses and passes its lint.
    let mut promtool = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("promtool is installed");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));

    // A real Prometheus scrapes it with the token, as a team's would.
    let prometheus = Prometheus::start(server.base.trim_start_matches("http://"), &viewer);
    let started = Instant::now();
    let limit = loop {
        match prometheus.query(&format!("leakscope_container_limit_bytes{{container=\"{}\"}}", limited.name)) {
            Ok(result) if !result.is_empty() => break result[0]["value"][1].as_str().unwrap().to_string(),
            _ if started.elapsed() > Duration::from_secs(60) => panic!("Prometheus never scraped Leakscope:\n{}", prometheus.log()),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    assert_eq!(limit, "67108864");
    let up = prometheus.query("up{job=\"leakscope\"}").unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up:?}");

    // Every query of the Grafana dashboard in the repo runs on that Prometheus.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/leakscope-dashboard.json")).unwrap()).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"].as_array().unwrap().iter().flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string())).collect();
    exprs.extend(dashboard["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["definition"].as_str()).map(|d| {
        // label_values(SELECTOR, label) is Grafana's: its selector is the query.
        d.trim_start_matches("label_values(").rsplit_once(',').unwrap().0.to_string()
    }));
    for expr in exprs {
        let promql = expr.replace("$host", ".*").replace("$container", ".*").replace("$__range", "5m");
        let result = prometheus.query(&promql).unwrap_or_else(|e| panic!("the dashboard's query does not run: {e}"));
        if promql.contains("working_set_bytes") || promql.contains("host_connected") {
            assert!(!result.is_empty(), "the dashboard's query finds nothing: {promql}");
        }
    }
}

#[test]
fn webhooks_get_one_message_per_crossing_and_oom_kill_and_every_delivery_is_audited() {
    let server = Server::start(&[], &[]);
    let receiver = WebhookReceiver::start();
    let id = server.add_webhook("ops", &receiver.url);
    // A receiver that is not there: its failures are audited too.
    let gone = format!("http://127.0.0.1:{}/hook", free_port());
    let gone_id = server.add_webhook("gone", &gone);

    // The URL is a secret: the list shows where it goes, never the path.
    let (status, list) = server.get_json("/api/v1/webhooks");
    assert_eq!(status, 200);
    assert!(!list.to_string().contains("secret-part"), "{list}");
    assert_eq!(list[0]["destination"], receiver.url.trim_end_matches("/hook/secret-part"));
    // Admins only.
    let viewer = create_token(&server.data_dir, "operator", "not-admin");
    let denied = ureq::get(&server.url("/api/v1/webhooks")).set("Authorization", &format!("Bearer {viewer}")).call();
    assert!(matches!(denied, Err(ureq::Error::Status(403, _))), "{denied:?}");
    // Bad input is refused with the reason.
    let (status, answer) = server.post_json("/api/v1/webhooks", r#"{"name":"x","url":"file:///etc/passwd"}"#);
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = server.post_json("/api/v1/webhooks", r#"{"name":"x","url":"https://h.example/x","kind":"pager"}"#);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("not a webhook kind"), "{answer}");

    // The test button: one message that says it is a test; a dead receiver says why.
    let (status, result) = server.post_json(&format!("/api/v1/webhooks/{id}/test"), "");
    assert_eq!(status, 200, "{result}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["delivered"], true, "{result}");
    assert_eq!(receiver.received().iter().filter(|b| b["event"] == "test").count(), 1);
    let (_, failed) = server.post_json(&format!("/api/v1/webhooks/{gone_id}/test"), "");
    let failed: serde_json::Value = serde_json::from_str(&failed).unwrap();
    assert_eq!(failed["delivered"], false, "{failed}");
    assert!(failed["detail"].as_str().unwrap().starts_with("not delivered"), "{failed}");

    // The admin page's own buttons: the result comes back in its banner, the table shows the last result.
    let no_redirects = ureq::AgentBuilder::new().redirects(0).build();
    for (webhook, banner, words) in [(id, "admin-notice", "Test message delivered (HTTP 200)"), (gone_id, "admin-error", "The test message was not delivered")] {
        let posted = no_redirects.post(&server.url(&format!("/admin/webhooks/{webhook}/test"))).set("Authorization", &format!("Bearer {}", server.token)).call().unwrap();
        assert_eq!(posted.status(), 303);
        let location = posted.header("location").unwrap().to_string();
        let (status, page) = server.get(&location);
        assert_eq!(status, 200);
        assert!(page.contains(&format!("id=\"{banner}\"")) && page.contains(words), "{location}: no {banner} saying {words}");
    }
    let (_, admin) = server.get("/admin");
    assert!(admin.contains("data-webhook=\"ops\"") && admin.contains("delivered (HTTP 200)"), "the admin page lists no webhook with its last result");
    assert!(!admin.contains("secret-part"), "the admin page shows a webhook's secret path");

    // 2 MiB/s under a 48 MiB limit: over 90 % of it, then OOM-killed within half a minute.
    let oom = TestContainer::run_image("alert-oom", &fixture_image("native"), &["-e", "LEAK_KIB_PER_SEC=2048", "-m", "48m", "--memory-swap", "48m"], &[]);
    let steady = TestContainer::run("alert-steady", &["-m", "64m"], &["sleep", "600"]);
    server.wait_until(Duration::from_secs(120), "the OOM kill is notified", || !receiver.events("oom-kill", &oom.name).is_empty());
    // Deliveries to the dead receiver retry for a while; what arrived here must not grow.
    std::thread::sleep(Duration::from_secs(8));
    let limit = receiver.events("limit", &oom.name);
    assert_eq!(limit.len(), 1, "one message for one crossing: {limit:?}");
    assert!(limit[0]["sentence"].as_str().unwrap().contains("of its 48.0 MiB memory limit"), "{}", limit[0]);
    let kills = receiver.events("oom-kill", &oom.name);
    assert_eq!(kills.len(), 1, "{kills:?}");
    let kill = &kills[0];
    assert_eq!(kill["host"], server.listed(&oom.name).unwrap()["host"], "{kill}");
    assert!(kill["link"].as_str().unwrap().ends_with(&format!("/containers/{}", oom.name)), "{kill}");
    assert!(receiver.received().iter().all(|b| b["container"] != steady.name.as_str()), "a steady container was notified");

    // Every delivery and failure is in the audit log.
    let (_, audit) = server.get_json("/api/v1/audit");
    let actions: Vec<(String, String)> = audit.as_array().unwrap().iter().map(|a| (a["action"].as_str().unwrap().to_string(), a["target"].as_str().unwrap().to_string())).collect();
    for (action, target) in [("webhook.create", "ops"), ("webhook.delivered", "ops"), ("webhook.failed", "gone")] {
        assert!(actions.iter().any(|(a, t)| a == action && t == target), "no {action} for {target} in {actions:?}");
    }
    // Other tests' containers run on the same engine beside this one and may be notified too: count this test's own.
    let ours = |a: &serde_json::Value| {
        let detail = a["detail"].as_str().unwrap_or("");
        a["action"] == "webhook.delivered" && a["target"] == "ops" && (detail.starts_with("test:") || detail.contains(&format!(" {} on ", oom.name)))
    };
    let delivered = audit.as_array().unwrap().iter().filter(|a| ours(a)).count();
    assert_eq!(delivered, 4, "two tests, limit, OOM kill: {audit}");

    // A restart of Leakscope repeats nothing: what was said is kept.
    let before = receiver.received().len();
    let again = server.kill9_and_restart();
    again.wait_until(Duration::from_secs(60), "the containers are listed again", || again.listed(&steady.name).is_some());
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(receiver.received().len(), before, "a restart sent again: {:?}", &receiver.received()[before..]);

    // Removed: no more messages, audited.
    let (status, _) = end2end::answer(again.request("DELETE", &format!("/api/v1/webhooks/{id}")).call(), "delete");
    assert_eq!(status, 204);
    let (status, _) = end2end::answer(again.request("DELETE", &format!("/api/v1/webhooks/{id}")).call(), "delete");
    assert_eq!(status, 404);
}
