//! Host agents and the hub on real processes: an agent enrolls with a
//! one-time token, dials out to the hub over its websocket and shows as a
//! connected host; it survives a hub restart, is marked disconnected (not
//! removed) when it dies, comes back with its own credential, and stops at
//! once when an admin revokes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{leakscope_bin, Server, TestContainer};

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(hub: &Server, data_dir: &Path, token: Option<&str>) -> Agent {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.join(format!("agent-{}.log", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
        let mut cmd = Command::new(leakscope_bin());
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
    let out = Command::new(leakscope_bin()).args(["agent-token", "create", "--name", name, "--data-dir", hub.data_dir.to_str().unwrap()]).output().unwrap();
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
    assert!(dashboard.contains("<th>Host</th>") && dashboard.contains("data-host=\"edge-1\""), "the dashboard has no host column");

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
    let _ = std::fs::remove_dir_all(&agent_dir);
}
