//! Host agents and the hub on real processes: an agent enrolls with a
//! one-time token, dials out to the hub over its websocket and shows as a
//! connected host; it survives a hub restart, is marked disconnected (not
//! removed) when it dies, comes back with its own credential, and stops at
//! once when an admin revokes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{leakscope_bin, Netns, Server, TestContainer};

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(hub: &Server, data_dir: &Path, token: Option<&str>) -> Agent {
        Self::start_in(None, hub, data_dir, token)
    }

    /// In a network namespace of its own (`nsenter --net` only: it keeps this machine's
    /// mounts, so the Docker socket and the cgroup files are the same).
    fn start_in(netns: Option<&Netns>, hub: &Server, data_dir: &Path, token: Option<&str>) -> Agent {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.join(format!("agent-{}.log", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{}", ns.name)).arg(leakscope_bin());
                c
            }
            None => Command::new(leakscope_bin()),
        };
        cmd.args(["agent", "--hub", &hub.base, "--data-dir", data_dir.to_str().unwrap(), "--interval", "1s", "--name", "from-agent"]);
        if let Some(token) = token {
            cmd.args(["--token", token]);
        }
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd.stdout(Stdio::from(file.try_clone().unwrap())).stderr(Stdio::from(file)).spawn().unwrap();
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the agent to exit by itself; its exit status and log.
    fn wait_exit(&mut self, within: Duration) -> (bool, String) {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent did not stop within {within:?}:\n{}", self.log());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enrollment_token(hub: &Server, name: &str) -> String {
    let out = Command::new(leakscope_bin()).args(["agent-token", "create", "--name", name, "--data-dir", hub.data_dir.to_str().unwrap()]).args(end2end::database_args(&hub.data_dir)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_string()
}

fn agent_host(hub: &Server, name: &str) -> Option<serde_json::Value> {
    let (status, hosts) = hub.get_json("/api/v1/hosts");
    assert_eq!(status, 200, "{hosts}");
    hosts.as_array().unwrap().iter().find(|h| h["name"] == name && h["via"] == "agent").cloned()
}

fn wait_connected(hub: &Server, name: &str, connected: bool, agent_log: impl Fn() -> String) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if agent_host(hub, name).is_some_and(|h| h["connected"] == connected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{name} never became connected={connected}: {:?}\nagent log:\n{}\nhub log:\n{}", agent_host(hub, name), agent_log(), hub.log_text());
}

#[test]
fn an_agent_enrolls_once_reconnects_after_hub_restarts_and_stops_when_revoked() {
    let hub = Server::start(&[], &[]);
    let token = enrollment_token(&hub, "edge-1");
    assert!(token.starts_with("lse_"), "{token}");
    let agent_dir = std::env::temp_dir().join(end2end::unique_name("agent"));
    let agent = Agent::start(&hub, &agent_dir, Some(&token));
    // The name given with the token wins over the agent's own.
    wait_connected(&hub, "edge-1", true, || agent.log());
    let host = agent_host(&hub, "edge-1").unwrap();
    assert!(host["last_seen_ms"].as_i64().unwrap() > 0, "{host}");
    assert!(host["address"].as_str().unwrap().starts_with("unix://"), "{host}");
    // The agent keeps its credential to itself.
    use std::os::unix::fs::PermissionsExt;
    let credential = agent_dir.join("agent-credential");
    assert_eq!(std::fs::metadata(&credential).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&credential).unwrap().starts_with("lsa_"));
    let (_, metrics) = hub.get("/metrics");
    assert!(metrics.contains("leakscope_host_connected{host=\"edge-1\",via=\"agent\"} 1"), "{metrics}");

    // Its containers join the hub's list with their host (here the agent watches the hub's own
    // engine, so a container shows once per host), with live memory, on the dashboard too.
    let c = TestContainer::run("hub-seen", &["-m", "32m"], &["sleep", "600"]);
    let on_edge = |hub: &Server| -> Option<serde_json::Value> {
        let (_, list) = hub.get_json("/api/v1/containers?host=edge-1");
        list.as_array().unwrap().iter().find(|x| x["name"] == c.name.as_str()).cloned()
    };
    hub.wait_until(Duration::from_secs(60), "the agent's container is listed on the hub", || on_edge(&hub).is_some_and(|x| !x["memory"].is_null()));
    assert_eq!(on_edge(&hub).unwrap()["limit_bytes"], 32 << 20);
    let (_, dashboard) = hub.get("/");
    assert!(dashboard.contains("data-sort=\"host\"") && dashboard.contains("data-host=\"edge-1\""), "the dashboard has no host column");
    // A filter per host, and rows grouped under their host (or compose project) when sorted so.
    assert!(dashboard.contains("data-host-filter=\"edge-1\""), "the dashboard has no host filter");
    let (_, filtered) = hub.get("/?host=edge-1");
    assert!(filtered.contains("data-host=\"edge-1\""), "the filter lost the host's own containers");
    assert!(!filtered.contains("<tr data-name") || filtered.matches("<tr data-name").count() == filtered.matches("data-host=\"edge-1\"").count(), "the filter shows other hosts' containers");
    let (_, grouped) = hub.get("/?sort=host");
    assert!(grouped.contains("data-group=\"edge-1\""), "no group of rows for the host");
    let (_, by_project) = hub.get("/?sort=service");
    assert!(by_project.contains("class=\"group\""), "no group of rows by compose project");

    // An enrollment token works once.
    let mut second = Agent::start(&hub, &std::env::temp_dir().join(end2end::unique_name("agent")), Some(&token));
    let (ok, log) = second.wait_exit(Duration::from_secs(30));
    assert!(!ok && log.contains("used already"), "{log}");

    // The hub restarts; the agent comes back by itself.
    let hub = hub.kill9_and_restart();
    wait_connected(&hub, "edge-1", true, || agent.log());

    // The agent dies: its host stays listed, disconnected, with when it was last heard from.
    drop(agent);
    wait_connected(&hub, "edge-1", false, String::new);
    assert!(agent_host(&hub, "edge-1").unwrap()["last_seen_ms"].as_i64().is_some());
    // Its containers stay listed, marked stale.
    hub.wait_until(Duration::from_secs(10), "the disconnected host's container is stale", || on_edge(&hub).is_some_and(|x| x["state"] == "stale"));
    // Started again without a token: its own credential is enough.
    let mut agent = Agent::start(&hub, &agent_dir, None);
    wait_connected(&hub, "edge-1", true, || agent.log());

    // Revoked: the connection closes at once and the agent stops, saying why.
    let (_, agents) = hub.get_json("/api/v1/agents");
    let id = agents.as_array().unwrap().iter().find(|a| a["name"] == "edge-1").unwrap()["id"].as_i64().unwrap();
    let revoked_at = Instant::now();
    let (status, _) = end2end::answer(hub.request("DELETE", &format!("/api/v1/agents/{id}")).call(), "revoke");
    assert_eq!(status, 204);
    let (ok, log) = agent.wait_exit(Duration::from_secs(10));
    assert!(!ok && log.contains("revoked"), "{log}");
    println!("the agent stopped {:?} after the revocation", revoked_at.elapsed());
    assert!(agent_host(&hub, "edge-1").is_none(), "a revoked agent's host is still listed");
    hub.wait_until(Duration::from_secs(10), "a revoked host's containers leave the list", || on_edge(&hub).is_none());
    let (_, audit) = hub.get_json("/api/v1/audit");
    assert!(audit.as_array().unwrap().iter().any(|a| a["action"] == "revoked agent"), "{audit}");

    // Enrollment tokens also come from the API (admins only).
    let (status, made) = hub.post_json("/api/v1/agents/enrollments", r#"{"name":"edge-2"}"#);
    assert_eq!(status, 201, "{made}");
    assert!(made.contains("\"token\":\"lse_"), "{made}");
    // …but not for the name of the hub's own engine, whose containers the agent's would be taken for.
    let (_, engine) = hub.get_json("/api/v1/engine");
    let own_host = engine["host_name"].as_str().expect("the hub's engine has a host name").to_string();
    let (status, refused) = hub.post_json("/api/v1/agents/enrollments", &format!(r#"{{"name":"{own_host}"}}"#));
    assert_eq!(status, 400, "{refused}");
    assert!(refused.contains("reaches itself"), "{refused}");
    let _ = std::fs::remove_dir_all(&agent_dir);
}

/// GET on the hub with a token; the status and the whole body as bytes.
fn get_bytes(hub: &Server, path: &str, token: &str) -> (u16, Vec<u8>) {
    use std::io::Read;
    let response = match ureq::get(&hub.url(path)).set("Authorization", &format!("Bearer {token}")).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = response.status();
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).unwrap_or_else(|e| panic!("GET {path}: the body broke off: {e}"));
    (status, body)
}

fn sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Waits for a job on another host to end; its last state.
fn wait_remote_job(hub: &Server, job: &str, host: &str) -> serde_json::Value {
    hub.wait_job_at(&format!("/api/v1/jobs/{job}?host={host}"))
}

#[test]
fn an_agents_host_is_browsed_captured_and_analysed_through_the_hub_while_its_dumps_stay_there() {
    let hub = Server::start(&[], &[]);
    let token = enrollment_token(&hub, "far-1");
    let agent_dir = std::env::temp_dir().join(end2end::unique_name("agent"));
    let agent = Agent::start(&hub, &agent_dir, Some(&token));
    wait_connected(&hub, "far-1", true, || agent.log());
    let native = TestContainer::run_image("far-native", &end2end::fixture_image("native"), &["-m", "512m", "-e", "LEAK_KIB_PER_SEC=4000"], &[]);
    let name = native.name.clone();
    hub.wait_until(Duration::from_secs(60), "the agent's container is listed with memory", || {
        let (_, list) = hub.get_json("/api/v1/containers?host=far-1");
        list.as_array().unwrap().iter().any(|x| x["name"] == name.as_str() && !x["memory"].is_null())
    });

    // The dashboard links to the container's page on its host; the page, its chart and its
    // series come from the agent's own history.
    let (_, dashboard) = hub.get("/");
    assert!(dashboard.contains(&format!("href=\"/hosts/far-1/containers/{name}\"")), "no link to the agent's container");
    let (status, page) = hub.get(&format!("/hosts/far-1/containers/{name}"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"container-host\">far-1<"), "the page does not say its host");
    assert!(page.contains(&format!("/hosts/far-1/containers/{name}/memory.svg?")), "the chart is not the agent's");
    assert!(page.contains(&format!("/hosts/far-1/containers/{name}/capture")), "the capture form does not go to the agent");
    let (status, chart) = hub.get(&format!("/hosts/far-1/containers/{name}/memory.svg?range=1h"));
    assert_eq!(status, 200, "{chart}");
    assert!(chart.contains("<svg"), "{chart}");
    let (status, series) = hub.get_json(&format!("/api/v1/containers/{name}/memory?host=far-1&range=1h"));
    assert_eq!(status, 200, "{series}");
    assert!(!series["points"].as_array().unwrap().is_empty(), "{series}");
    let (status, missing) = hub.get(&format!("/hosts/far-1/containers/no-such-{name}"));
    assert_eq!(status, 404, "{missing}");
    let (status, _) = hub.get(&format!("/hosts/nowhere/containers/{name}/memory.svg"));
    assert_eq!(status, 404);
    let (status, why) = hub.get(&format!("/api/v1/containers/{name}/memory?host=nowhere&range=1h"));
    assert_eq!(status, 404, "{why}");
    assert!(why.contains("no host named nowhere"), "{why}");

    // A capture through the hub runs on the agent's host; the dump is stored and analysed there.
    let (status, started) = hub.post_json(&format!("/api/v1/containers/{name}/dumps?host=far-1"), r#"{"kind":"memory-map"}"#);
    assert_eq!(status, 202, "{started}");
    let job = serde_json::from_str::<serde_json::Value>(&started).unwrap()["job_id"].as_str().unwrap().to_string();
    let state = wait_remote_job(&hub, &job, "far-1");
    assert_eq!(state["state"], "done", "{state}");
    let dump = state["dump_id"].as_str().unwrap().to_string();
    let stored_on = |dir: &Path| std::fs::read_dir(dir.join("dumps")).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&dump))).unwrap_or(false);
    assert!(stored_on(&agent_dir), "the dump is not on the agent's host");
    assert!(!stored_on(&hub.data_dir), "the dump crossed to the hub");
    assert_eq!(hub.get(&format!("/api/v1/dumps/{dump}")).0, 404, "the hub's own store has the dump");
    let analysis = hub.wait_analysis_at(&format!("/api/v1/dumps/{dump}/analysis?host=far-1"));
    assert!(analysis["histogram"].as_array().unwrap().iter().any(|h| h["class"] == "[heap] (malloc's main arena)"), "{analysis}");
    let (status, page) = hub.get(&format!("/hosts/far-1/dumps/{dump}"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Memory by kind") && page.contains(&format!("/hosts/far-1/dumps/{dump}/download")), "the dump page is not the agent's dump");
    // The record says which host the dump comes from (it keeps saying so once downloaded or reported).
    let (status, record) = hub.get(&format!("/api/v1/dumps/{dump}?host=far-1"));
    assert_eq!(status, 200, "{record}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&record).unwrap()["host"], "far-1", "{record}");
    assert!(page.contains("on host far-1"), "the dump page does not name its host");
    let (status, page) = hub.get(&format!("/hosts/far-1/containers/{name}"));
    assert_eq!(status, 200);
    assert!(page.contains(&format!("href=\"/hosts/far-1/dumps/{dump}\"")), "the container page does not list the agent's dump");

    // The page's capture form: the agent's redirect comes back onto its host.
    let no_redirects = ureq::AgentBuilder::new().redirects(0).build();
    let answer = no_redirects
        .post(&hub.url(&format!("/hosts/far-1/containers/{name}/capture")))
        .set("Authorization", &format!("Bearer {}", hub.token))
        .send_form(&[("kind", "memory-map")]);
    let response = match answer {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(response.status(), 303, "{:?}", response.into_string());
    let location = response.header("location").unwrap_or_default().to_string();
    assert!(location.starts_with(&format!("/hosts/far-1/containers/{name}?")), "{location}");
    let job = location.split("capture=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert_eq!(wait_remote_job(&hub, &job, "far-1")["state"], "done");

    // A core dump: tens of MB streamed from the agent in flow-controlled chunks, byte for byte.
    let (status, started) = hub.post_json(&format!("/api/v1/containers/{name}/dumps?host=far-1"), r#"{"kind":"core"}"#);
    assert_eq!(status, 202, "{started}");
    let job = serde_json::from_str::<serde_json::Value>(&started).unwrap()["job_id"].as_str().unwrap().to_string();
    let state = wait_remote_job(&hub, &job, "far-1");
    assert_eq!(state["state"], "done", "{state}");
    let core = state["dump_id"].as_str().unwrap().to_string();
    let (_, info) = hub.get_json(&format!("/api/v1/dumps/{core}?host=far-1"));
    let viewer = end2end::create_token(&hub.data_dir, "viewer", "far-viewer");
    assert_eq!(get_bytes(&hub, &format!("/hosts/far-1/dumps/{core}/download"), &viewer).0, 403, "a viewer downloaded a dump of another host");
    let fetched = Instant::now();
    let (status, bytes) = get_bytes(&hub, &format!("/hosts/far-1/dumps/{core}/download"), &hub.token);
    assert_eq!(status, 200);
    println!("downloaded a {} MiB core dump from the agent through the hub in {:?}", bytes.len() >> 20, fetched.elapsed());
    assert!(bytes.len() > 8 << 20, "{} bytes", bytes.len());
    assert_eq!(bytes.len() as u64, info["size_bytes"].as_u64().unwrap(), "{info}");
    assert_eq!(sha256(&bytes), info["sha256"].as_str().unwrap(), "the download differs from the dump");
    let (_, audit) = hub.get_json("/api/v1/audit");
    assert!(audit.as_array().unwrap().iter().any(|a| a["action"] == "forwarded to host" && a["target"] == "far-1" && a["host"] == "far-1"), "{audit}");
    // Every entry names the host its action was done on (this server's own where not another).
    assert!(audit.as_array().unwrap().iter().all(|a| a["host"].as_str().is_some_and(|h| !h.is_empty())), "{audit}");
    let (_, admin) = hub.get("/admin");
    assert!(admin.contains("<th>Host</th>") && admin.contains("<td class=\"host\">far-1</td>"), "the admin page's audit log has no host");

    // The agent goes away: its host's data says so rather than hang.
    drop(agent);
    wait_connected(&hub, "far-1", false, String::new);
    let (status, why) = hub.get(&format!("/hosts/far-1/containers/{name}/memory.svg"));
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("not connected"), "{why}");
    let (status, page) = hub.get(&format!("/hosts/far-1/containers/{name}"));
    assert!(page.contains("not connected"), "{status} {page}");
    let _ = std::fs::remove_dir_all(&agent_dir);
}

#[test]
fn an_agent_behind_a_cut_link_is_shown_disconnected_and_its_history_has_no_gap_once_back() {
    let ns = Netns::new();
    let hub = Server::start_on(&ns.host_ip, &[]);
    let receiver = end2end::WebhookReceiver::start();
    hub.add_webhook("ops", &receiver.url);
    let token = enrollment_token(&hub, "cut-1");
    let agent_dir = std::env::temp_dir().join(end2end::unique_name("agent"));
    let agent = Agent::start_in(Some(&ns), &hub, &agent_dir, Some(&token));
    wait_connected(&hub, "cut-1", true, || agent.log());
    let c = TestContainer::run("cut-seen", &["-m", "32m"], &["sleep", "600"]);
    let name = c.name.clone();
    hub.wait_until(Duration::from_secs(60), "the agent's container is listed", || {
        let (_, list) = hub.get_json("/api/v1/containers?host=cut-1");
        list.as_array().unwrap().iter().any(|x| x["name"] == name.as_str() && !x["memory"].is_null())
    });
    std::thread::sleep(Duration::from_secs(5));

    // The link goes down: the hub hears nothing more, and says so after its silence limit.
    let unix_now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let cut_at = unix_now();
    let cut = Instant::now();
    ns.link(false);
    // A container on the agent's host is OOM-killed while the hub cannot hear it.
    let oom = TestContainer::run_image("cut-oom", &end2end::fixture_image("native"), &["-m", "48m", "--memory-swap", "48m", "-e", "LEAK_KIB_PER_SEC=4096"], &[]);
    wait_connected(&hub, "cut-1", false, || agent.log());
    println!("the hub marked the host disconnected {:?} after the cut", cut.elapsed());
    hub.wait_until(Duration::from_secs(10), "a cut host's containers stay listed, stale", || {
        let (_, list) = hub.get_json("/api/v1/containers?host=cut-1");
        list.as_array().unwrap().iter().any(|x| x["name"] == name.as_str() && x["state"] == "stale")
    });
    let (status, why) = hub.get(&format!("/api/v1/containers/{name}/memory?host=cut-1&range=5m"));
    assert_eq!(status, 503, "{why}");

    // Back up: the agent reconnects by itself, and the time of the cut is all there, every
    // second of it, because the agent kept sampling into its own store.
    ns.link(true);
    let restored = Instant::now();
    wait_connected(&hub, "cut-1", true, || agent.log());
    println!("the agent was back {:?} after the link was", restored.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    let (status, series) = hub.get_json(&format!("/api/v1/containers/{name}/memory?host=cut-1&from={cut_at}&to={}", unix_now()));
    assert_eq!(status, 200, "{series}");
    let times: Vec<i64> = series["points"].as_array().unwrap().iter().map(|p| p["time_ms"].as_i64().unwrap()).collect();
    let outage = cut.elapsed().as_secs() as usize;
    // The OOM kill reaches the hub once the agent is back (it is sent until the hub says it has it).
    let agent_kills = || receiver.events("oom-kill", &oom.name).into_iter().filter(|k| k["host"] == "cut-1").collect::<Vec<_>>();
    hub.wait_until(Duration::from_secs(30), "the OOM kill during the cut is notified", || !agent_kills().is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let kills = agent_kills();
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert!(kills[0]["link"].as_str().unwrap().ends_with(&format!("/hosts/cut-1/containers/{}", oom.name)), "{}", kills[0]);
    assert!(times.len() + 5 >= outage, "{} points over {outage} s", times.len());
    let widest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(widest <= 3_000, "a gap of {widest} ms in the agent's history across the cut: {times:?}");
    drop(agent);
    let _ = std::fs::remove_dir_all(&agent_dir);
}

/// A second Docker engine on this machine: its own socket, data root, exec root, pid file and
/// containerd, in a network namespace of its own (in ours, `--bridge=none` would delete the first
/// engine's `docker0`). With TLS it also listens on `tcp://<its namespace's address>:2376`,
/// verifying clients as `dockerd --tlsverify` does, with certificates made here by `openssl`.
struct SecondEngine {
    child: Child,
    dir: PathBuf,
    /// Held for its lifetime: dropping it removes the namespace (after the engine stops).
    _netns: Netns,
    host: String,
    /// `tcp://…:2376` and the client's certificate directory (ca.pem, cert.pem, key.pem).
    tls: Option<(String, PathBuf)>,
}

impl SecondEngine {
    fn start(images: &[&str], tls: bool) -> SecondEngine {
        let dir = std::env::temp_dir().join(end2end::unique_name("dockerd"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let netns = Netns::new();
        let host = format!("unix://{}/docker.sock", dir.display());
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let containerd = netns.name.replace('-', "");
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{}", netns.name))
            .args(["dockerd", "-H", &host, "--bridge=none", "--iptables=false", "--containerd-namespace", &containerd])
            .args(["--containerd-plugins-namespace", &format!("{containerd}p")])
            .args(["--data-root", dir.join("root").to_str().unwrap(), "--exec-root", dir.join("exec").to_str().unwrap()])
            .args(["--pidfile", dir.join("docker.pid").to_str().unwrap(), "--config-file", dir.join("daemon.json").to_str().unwrap()]);
        let tls = tls.then(|| {
            let client = make_certificates(&dir, &netns.peer_ip);
            let address = format!("tcp://{}:2376", netns.peer_ip);
            command.args(["-H", &address, "--tlsverify"]);
            for (flag, file) in [("--tlscacert", "ca.pem"), ("--tlscert", "server-cert.pem"), ("--tlskey", "server-key.pem")] {
                command.arg(flag).arg(dir.join("certs").join(file));
            }
            (address, client)
        });
        let child = command.stdout(Stdio::from(log.try_clone().unwrap())).stderr(Stdio::from(log)).spawn().unwrap();
        let engine = SecondEngine { child, dir, _netns: netns, host, tls };
        let started = Instant::now();
        while !engine.docker(&["info"]).status.success() {
            assert!(started.elapsed() < Duration::from_secs(60), "the second dockerd did not start:\n{}", std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(300));
        }
        // Images move between engines as archives.
        for image in images {
            let saved = Command::new("docker").args(["save", image]).output().unwrap();
            assert!(saved.status.success());
            let mut load = Command::new("docker").args(["-H", &engine.host, "load"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
            std::io::Write::write_all(&mut load.stdin.take().unwrap(), &saved.stdout).unwrap();
            assert!(load.wait().unwrap().success());
        }
        engine
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker").arg("-H").arg(&self.host).args(args).output().unwrap()
    }
}

impl SecondEngine {
    /// Stops the engine (SIGTERM: it stops its containers and unmounts their layers first).
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let started = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let listed = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, a server certificate for `ip` and a client certificate, by the `openssl` command
/// (in `dir/certs`); returns the client's directory (ca.pem, cert.pem, key.pem).
fn make_certificates(dir: &Path, ip: &str) -> PathBuf {
    let certs = dir.join("certs");
    let client = dir.join("client");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&client).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(&certs).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(certs.join("server.ext"), format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n")).unwrap();
    std::fs::write(certs.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=leakscope test CA"]);
    for (who, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{who}-key.pem"), "-out", &format!("{who}.csr"), "-subj", &format!("/CN={who}")]);
        openssl(&["x509", "-req", "-in", &format!("{who}.csr"), "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "2"]
            .into_iter()
            .chain(["-out", &format!("{who}-cert.pem"), "-extfile", ext])
            .collect::<Vec<_>>());
    }
    for (from, to) in [("ca.pem", "ca.pem"), ("client-cert.pem", "cert.pem"), ("client-key.pem", "key.pem")] {
        std::fs::copy(certs.join(from), client.join(to)).unwrap();
    }
    client
}

/// Three engines under one `serve`: this machine's, a second on its own socket, and a third
/// over `tcp://` with TLS; an OOM kill on an engine reached directly is notified with its host.
#[test]
fn serve_watches_a_second_engine_directly_and_browses_and_captures_there() {
    let image = end2end::busybox_image();
    let native = end2end::fixture_image("native");
    let mut second = SecondEngine::start(&[&image, &native], false);
    let third = SecondEngine::start(&[&image], true);
    let name = end2end::unique_name("second");
    // The same compose service on two engines: two deployments, a verdict each.
    const FLEET_WEB: [&str; 4] = ["--label", "com.docker.compose.project=fleet", "--label", "com.docker.compose.service=web"];
    let run = second.docker(&[&["run", "-d", "--name", &name, "--network", "none", "-m", "48m"][..], &FLEET_WEB, &[&image, "sleep", "600"]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let far = end2end::unique_name("third");
    let run = third.docker(&["run", "-d", "--name", &far, "--network", "none", "-m", "40m", &image, "sleep", "600"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let own = TestContainer::run("first-engine", &[&["-m", "32m"][..], &FLEET_WEB].concat(), &["sleep", "600"]);
    let (tls_address, client_certs) = third.tls.clone().unwrap();
    let hub = Server::start(
        &[
            "--docker-host",
            "unix:///var/run/docker.sock",
            "--docker-host",
            &format!("second={}", second.host),
            "--docker-host",
            &format!("third={tls_address}"),
            "--docker-cert-path",
            &format!("third={}", client_certs.display()),
        ],
        &[],
    );
    let receiver = end2end::WebhookReceiver::start();
    hub.add_webhook("ops", &receiver.url);

    // Every engine's containers, each with its host; the others are listed as reached directly.
    for (host, container, limit) in [("second", &name, 48 << 20), ("third", &far, 40 << 20)] {
        hub.wait_until(Duration::from_secs(60), &format!("{host}'s container is listed with memory"), || {
            let (_, list) = hub.get_json(&format!("/api/v1/containers?host={host}"));
            list.as_array().unwrap().iter().any(|x| x["name"] == container.as_str() && x["limit_bytes"] == limit && !x["memory"].is_null())
        });
    }
    let (_, list) = hub.get_json("/api/v1/containers");
    let first = list.as_array().unwrap().iter().find(|x| x["name"] == own.name.as_str()).expect("the first engine's container is listed");
    assert!(first["host"] != "second" && first["host"] != "third", "{first}");
    assert!(!list.as_array().unwrap().iter().any(|x| x["name"] == name.as_str() && x["host"] != "second"), "the second engine's container shows under another host");
    let (_, services) = hub.get_json("/api/v1/services");
    let mut fleet_hosts: Vec<&str> = services.as_array().unwrap().iter().filter(|s| s["project"] == "fleet" && s["service"] == "web").map(|s| s["host"].as_str().unwrap()).collect();
    fleet_hosts.sort();
    let mut expected = vec!["second", first["host"].as_str().unwrap()];
    expected.sort();
    assert_eq!(fleet_hosts, expected, "one verdict per engine's deployment: {services}");
    let (_, hosts) = hub.get_json("/api/v1/hosts");
    for host in ["second", "third"] {
        let direct = hosts.as_array().unwrap().iter().find(|h| h["name"] == host).cloned().unwrap_or_default();
        assert_eq!((direct["via"].as_str(), direct["connected"].as_bool()), (Some("direct"), Some(true)), "{hosts}");
    }
    let (status, refused) = hub.post_json("/api/v1/agents/enrollments", r#"{"name":"second"}"#);
    assert_eq!((status, refused.contains("reaches itself")), (400, true), "an agent may not take a direct engine's name: {refused}");
    // The TLS engine takes no client without a certificate its CA signed: what reached it was ours.
    let plain = Command::new("docker").args(["-H", &tls_address, "info"]).output().unwrap();
    assert!(!plain.status.success(), "the third engine answered a client without a certificate");

    // Their pages, charts and captures: done on their own engines, stored in their own stores.
    for (host, container) in [("second", &name), ("third", &far)] {
        let (status, page) = hub.get(&format!("/hosts/{host}/containers/{container}"));
        assert_eq!(status, 200, "{page}");
        assert!(page.contains(&format!("id=\"container-host\">{host}<")), "the page does not say its host");
        let (status, chart) = hub.get(&format!("/hosts/{host}/containers/{container}/memory.svg?range=1h"));
        assert!(status == 200 && chart.contains("<svg"), "{status} {chart}");
        let (status, started) = hub.post_json(&format!("/api/v1/containers/{container}/dumps?host={host}"), r#"{"kind":"memory-map"}"#);
        assert_eq!(status, 202, "{started}");
        let job = serde_json::from_str::<serde_json::Value>(&started).unwrap()["job_id"].as_str().unwrap().to_string();
        let state = wait_remote_job(&hub, &job, host);
        assert_eq!(state["state"], "done", "{host}: {state}");
        let dump = state["dump_id"].as_str().unwrap();
        let stored = std::fs::read_dir(hub.data_dir.join(format!("hosts/{host}/dumps"))).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with(dump));
        assert!(stored, "the dump is not in {host}'s store");
        let (status, page) = hub.get(&format!("/hosts/{host}/dumps/{dump}"));
        assert_eq!(status, 200, "{page}");
    }

    // An OOM kill on the second engine: one message, with that host and a link to the container there.
    let oom = end2end::unique_name("second-oom");
    let run = second.docker(&["run", "-d", "--name", &oom, "--network", "none", "-m", "48m", "--memory-swap", "48m", "-e", "LEAK_KIB_PER_SEC=4096", &native]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    hub.wait_until(Duration::from_secs(90), "the second engine's OOM kill is notified", || !receiver.events("oom-kill", &oom).is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let kills = receiver.events("oom-kill", &oom);
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["host"], "second", "{}", kills[0]);
    assert!(kills[0]["link"].as_str().unwrap().ends_with(&format!("/hosts/second/containers/{oom}")), "{}", kills[0]);

    // The second engine stops: its host is disconnected and its containers stale, not gone.
    second.stop();
    hub.wait_until(Duration::from_secs(30), "the stopped engine's container is stale", || {
        let (_, list) = hub.get_json("/api/v1/containers?host=second");
        list.as_array().unwrap().iter().any(|x| x["name"] == name.as_str() && x["state"] == "stale")
    });
    let (_, hosts) = hub.get_json("/api/v1/hosts");
    assert!(hosts.as_array().unwrap().iter().any(|h| h["name"] == "second" && h["connected"] == false), "{hosts}");
}

/// An sshd of the test's own on a loopback port: its host key, one authorized client key, and
/// an `ssh` on PATH that uses a config of the test's (identity, known host) — so nothing of
/// this machine's own ssh setup is read or changed.
struct SshServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl SshServer {
    fn start() -> SshServer {
        assert!(Path::new("/usr/sbin/sshd").is_file(), "no sshd: ./dev test installs openssh-server");
        let dir = std::env::temp_dir().join(end2end::unique_name("sshd"));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        for key in ["host_key", "client_key"] {
            let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(dir.join(key)).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let port = end2end::free_port();
        let public = |key: &str| std::fs::read_to_string(dir.join(format!("{key}.pub"))).unwrap();
        std::fs::write(dir.join("authorized_keys"), public("client_key")).unwrap();
        let host_key = public("host_key");
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(dir.join("known_hosts"), format!("[127.0.0.1]:{port} {}\n", host_key.join(" "))).unwrap();
        let config = format!(
            "Host *\n  IdentityFile {0}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {0}/known_hosts\n  GlobalKnownHostsFile /dev/null\n",
            dir.display()
        );
        std::fs::write(dir.join("config"), config).unwrap();
        let wrapper = dir.join("bin/ssh");
        std::fs::write(&wrapper, format!("#!/bin/sh\nexec /usr/bin/ssh -F {}/config \"$@\"\n", dir.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string(), "-o", "ListenAddress=127.0.0.1", "-h"])
            .arg(dir.join("host_key"))
            .arg("-o")
            .arg(format!("AuthorizedKeysFile={}/authorized_keys", dir.display()))
            .args(["-o", "StrictModes=no", "-o", "PermitRootLogin=prohibit-password", "-o", "PasswordAuthentication=no", "-o", "UsePAM=no"])
            .arg("-o")
            .arg(format!("PidFile={}/sshd.pid", dir.display()))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let server = SshServer { child, dir, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "sshd did not start:\n{}", std::fs::read_to_string(server.dir.join("sshd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// PATH with the test's `ssh` first.
    fn path(&self) -> String {
        format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default())
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `--docker-host NAME=ssh://user@host:port`, as the docker CLI does it: ssh to the host and
/// `docker system dial-stdio` there (here this machine's engine, through an sshd of the test's).
#[test]
fn serve_reaches_an_engine_over_ssh_as_the_docker_cli_does() {
    let sshd = SshServer::start();
    let c = TestContainer::run("over-ssh", &["-m", "24m"], &["sleep", "600"]);
    // More containers than sshd lets connections authenticate at once (MaxStartups 10):
    // the first sweep must not open them all at the same moment.
    let crowd: Vec<TestContainer> = (0..14).map(|_| TestContainer::run("over-ssh-crowd", &["-m", "16m"], &["sleep", "600"])).collect();
    let path = sshd.path();
    let hub = Server::start(
        &["--docker-host", "unix:///var/run/docker.sock", "--docker-host", &format!("viassh=ssh://root@127.0.0.1:{}", sshd.port)],
        &[("PATH", &path)],
    );
    hub.wait_until(Duration::from_secs(90), "the container is listed on the host reached over ssh, with memory", || {
        let (_, list) = hub.get_json("/api/v1/containers?host=viassh");
        let list = list.as_array().unwrap();
        let with_memory = |name: &str| list.iter().any(|x| x["name"] == name && !x["memory"].is_null());
        list.iter().any(|x| x["name"] == c.name.as_str() && x["limit_bytes"] == 24 << 20) && with_memory(&c.name) && crowd.iter().all(|k| with_memory(&k.name))
    });
    assert!(!hub.log_text().contains("an ssh connection to an engine failed"), "{}", hub.log_text());
    let (_, hosts) = hub.get_json("/api/v1/hosts");
    let host = hosts.as_array().unwrap().iter().find(|h| h["name"] == "viassh").cloned().unwrap_or_default();
    assert_eq!((host["via"].as_str(), host["connected"].as_bool()), (Some("direct"), Some(true)), "{hosts}");
    assert!(host["address"].as_str().unwrap().starts_with("ssh://"), "{host}");
    // A capture through the ssh link: exec and the archive copy run over it too.
    let (status, started) = hub.post_json(&format!("/api/v1/containers/{}/dumps?host=viassh", c.name), r#"{"kind":"memory-map"}"#);
    assert_eq!(status, 202, "{started}");
    let job = serde_json::from_str::<serde_json::Value>(&started).unwrap()["job_id"].as_str().unwrap().to_string();
    let state = wait_remote_job(&hub, &job, "viassh");
    assert_eq!(state["state"], "done", "{state}\nsshd log:\n{}", std::fs::read_to_string(sshd.dir.join("sshd.log")).unwrap_or_default());
    // Sessions are reused between sweeps (every 2 s) and end with their connection: their
    // number stays near what one sweep needs (at most 32 idle kept, a few in flight). Each
    // sweep used to add one per container and none ever ended.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(5));
        let sessions = ssh_children(hub.pid());
        assert!(sessions <= 48, "{sessions} ssh processes under the hub");
    }
    assert!(!hub.log_text().contains("an ssh connection to an engine failed"), "{}", hub.log_text());
}

/// How many `ssh` processes `pid` has started that are still running.
fn ssh_children(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …
            let Some((head, tail)) = stat.rsplit_once(')') else { return false };
            let ppid = tail.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
            head.ends_with("(ssh") && ppid == Some(pid)
        })
        .count()
}
