//! `leakscope agent`: runs on each Docker host, samples its engine exactly as
//! `serve` does (an in-process engine on its own data dir, which is also the
//! buffer that outlives a hub outage), and dials out to the hub: enrolls
//! once with the admin's token, then keeps one websocket open, reconnecting
//! with backoff. Revoked on the hub, it stops. The hub's requests for this
//! host (pages' data, charts, captures, analyses, downloads) are answered by
//! this host's own copy of the app over that socket: dumps stay here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use leakscope_engine::{Engine, EngineConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::agent_link::{send_within, AgentEngine, AgentMessage, HubMessage, REVOKED};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The hub's address, as team mates open it (`https://leakscope.example`).
    #[arg(long)]
    pub hub: String,
    /// The enrollment token from the hub's admin (needed once; the agent keeps its own credential).
    #[arg(long, env = "LEAKSCOPE_ENROLL_TOKEN")]
    pub token: Option<String>,
    /// This host's display name (default: the machine's host name; a name given with the token wins).
    #[arg(long)]
    pub name: Option<String>,
    /// The Docker engine to watch (defaults to DOCKER_HOST, then the local socket).
    #[arg(long, env = "LEAKSCOPE_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// TLS for a `tcp://` engine: a directory with `ca.pem`, `cert.pem` and `key.pem` (as `docker --tlsverify`).
    #[arg(long)]
    pub docker_cert_path: Option<PathBuf>,
    /// The agent's samples, its host id and credential.
    #[arg(long, default_value = "./agent-data", env = "LEAKSCOPE_AGENT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Keep heap dumps in an S3-compatible bucket instead of on this host (`<data-dir>/dumps`):
    /// `s3://bucket/prefix`, optionally `?endpoint=URL&region=NAME` (a self-hosted store is
    /// reached path-style). Credentials, region and endpoint also come from `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`.
    #[arg(long, env = "LEAKSCOPE_DUMP_STORE")]
    pub dump_store: Option<String>,
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub interval: Duration,
}

/// A heartbeat goes with every sampling sweep (the hub's dashboard then has each reading
/// within its own next tick); this often at least when nothing is sampled.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const LONGEST_BACKOFF: Duration = Duration::from_secs(15);
const CONNECT_WITHIN: Duration = Duration::from_secs(10);


pub async fn run(args: AgentArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let host_id = host_id(&args.data_dir)?;
    let credential = match read_secret(&args.data_dir.join("agent-credential")) {
        Some(c) => c,
        None => enroll(&args, &host_id).await?,
    };
    let mut config = EngineConfig::new(&args.data_dir);
    config.docker_host = args.docker_host.clone();
    config.docker_cert_path = args.docker_cert_path.clone();
    // The name the hub knows this host by: its containers, events and dumps carry it.
    config.host_name = read_secret(&args.data_dir.join("agent-name"));
    config.sample_interval = args.interval;
    let site = crate::serve::site_root(None);
    if let Err(missing) = crate::serve::use_capture_helpers(&mut config, None, &site) {
        tracing::warn!(agent = %missing.display(), "capture helper not found: captures on this host from images without jcmd will fail");
    }
    config.dump_store = args.dump_store.clone();
    let engine = Engine::start(config).map_err(|e| e.to_string())?;
    if let Err(e) = engine.probe_dump_store().await {
        tracing::error!(error = %e, "the dump store does not answer; captures fail until it does");
    }
    let app = crate::tunnel::host_app(&args.data_dir, &site, &engine)?;
    let url = connect_url(&args.hub)?;
    let mut backoff = Duration::from_secs(1);
    // OOM kills wait here while the hub is away (the broadcast keeps up to 256 of them).
    let mut oom_kills = OomKills { live: engine.subscribe_oom_kills(), unacknowledged: Vec::new() };
    loop {
        match session(&url, &credential, &engine, &app, &mut oom_kills).await {
            Ended::Revoked => return Err("this agent was revoked on the hub; enroll it again with a new token (remove agent-credential from its data dir)".into()),
            Ended::Lost(why) => {
                tracing::warn!(hub = %args.hub, %why, retry_in = ?backoff, "no connection to the hub; sampling goes on locally");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LONGEST_BACKOFF);
            }
            Ended::WasUp(why) => {
                tracing::warn!(hub = %args.hub, %why, "the hub connection ended; reconnecting");
                backoff = Duration::from_secs(1);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

enum Ended {
    Revoked,
    /// Never got through.
    Lost(String),
    /// Was connected, then lost.
    WasUp(String),
}

/// The engine's OOM kills for the hub, each sent again on every connection until the hub
/// acknowledges it (a link that is cut but not yet noticed swallows what is sent on it).
struct OomKills {
    live: tokio::sync::broadcast::Receiver<leakscope_model::alerts::OomKill>,
    unacknowledged: Vec<leakscope_model::alerts::OomKill>,
}

impl OomKills {
    async fn next(&mut self) -> leakscope_model::alerts::OomKill {
        loop {
            match self.live.recv().await {
                Ok(kill) => {
                    if self.unacknowledged.len() >= 256 {
                        self.unacknowledged.remove(0);
                    }
                    self.unacknowledged.push(kill.clone());
                    return kill;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "more OOM kills than the hub could be told of"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

fn heartbeat(engine: &Engine) -> Message {
    Message::Binary(crate::agent_link::pack_heartbeat(engine_state(engine), engine.overview().containers.clone()).into())
}

fn text_message(message: &AgentMessage) -> Message {
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

async fn session(url: &str, credential: &str, engine: &Engine, app: &axum::Router, oom_kills: &mut OomKills) -> Ended {
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    match format!("Bearer {credential}").parse() {
        Ok(value) => request.headers_mut().insert(axum::http::header::AUTHORIZATION, value),
        Err(_) => return Ended::Revoked,
    };
    // A hub behind a cut link answers nothing at all: give up on it in time and retry.
    let (mut socket, _) = match tokio::time::timeout(CONNECT_WITHIN, tokio_tungstenite::connect_async(request)).await {
        Err(_) => return Ended::Lost(format!("no answer within {CONNECT_WITHIN:?}")),
        Ok(Ok(s)) => s,
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) if response.status() == 401 => return Ended::Revoked,
        Ok(Err(e)) => return Ended::Lost(e.to_string()),
    };
    tracing::info!(hub = %url, "connected to the hub");
    let hello = AgentMessage::Hello { version: env!("CARGO_PKG_VERSION").into(), engine: engine_state(engine) };
    if let Err(e) = send_within(&mut socket, text_message(&hello)).await {
        return Ended::WasUp(e.to_string());
    }
    // The containers at once: a hub that just restarted knows nothing of this host yet.
    if let Err(e) = send_within(&mut socket, heartbeat(engine)).await {
        return Ended::WasUp(e.to_string());
    }
    // What the hub may not have heard of (sent on a link that was already cut, or while it was away).
    for kill in oom_kills.unacknowledged.clone() {
        if let Err(e) = send_within(&mut socket, text_message(&AgentMessage::OomKill { kill })).await {
            return Ended::WasUp(e.to_string());
        }
    }
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    let mut sweeps = engine.subscribe();
    let mut last_beat = std::time::Instant::now();
    // Answers to the hub's requests, written by their tasks and sent from here.
    let (out, mut answers) = tokio::sync::mpsc::channel::<Message>(64);
    let requests = crate::tunnel::AgentSide::new(app.clone(), out);
    let mut heard = std::time::Instant::now();
    loop {
        tokio::select! {
            Some(answer) = answers.recv() => {
                if let Err(e) = send_within(&mut socket, answer).await {
                    return Ended::WasUp(e.to_string());
                }
            }
            kill = oom_kills.next() => {
                if let Err(e) = send_within(&mut socket, text_message(&AgentMessage::OomKill { kill })).await {
                    return Ended::WasUp(e.to_string());
                }
            }
            swept = sweeps.changed() => {
                if swept.is_err() {
                    return Ended::WasUp("the engine stopped".into());
                }
                sweeps.borrow_and_update();
                last_beat = std::time::Instant::now();
                if let Err(e) = send_within(&mut socket, heartbeat(engine)).await {
                    return Ended::WasUp(e.to_string());
                }
            }
            _ = beat.tick() => {
                // The hub pings every few seconds: silence means the link is gone even when TCP has not noticed.
                if heard.elapsed() > crate::agent_link::SILENCE_LIMIT {
                    return Ended::WasUp("the hub has been silent for 30 s".into());
                }
                if last_beat.elapsed() >= HEARTBEAT_EVERY {
                    last_beat = std::time::Instant::now();
                    if let Err(e) = send_within(&mut socket, heartbeat(engine)).await {
                        return Ended::WasUp(e.to_string());
                    }
                }
            }
            // The hub pings every few seconds: silence means the link is gone even when TCP has not noticed.
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Close(frame))) => {
                    if frame.as_ref().is_some_and(|f| f.reason.as_str() == REVOKED) {
                        return Ended::Revoked;
                    }
                    return Ended::WasUp("the hub closed the connection".into());
                }
                Some(Ok(Message::Text(text))) => {
                    heard = std::time::Instant::now();
                    match serde_json::from_str::<HubMessage>(&text) {
                        Ok(HubMessage::OomKillReceived { kill }) => oom_kills.unacknowledged.retain(|k| *k != kill),
                        Ok(message) => requests.handle(message),
                        Err(e) => tracing::warn!(error = %e, "a message from the hub was not understood"),
                    }
                }
                Some(Ok(_)) => heard = std::time::Instant::now(),
                Some(Err(e)) => return Ended::WasUp(e.to_string()),
                None => return Ended::WasUp("the hub went away".into()),
            }
        }
    }
}

fn engine_state(engine: &Engine) -> AgentEngine {
    let overview = engine.overview();
    AgentEngine {
        address: overview.engine.address.clone(),
        connected: overview.engine.connected,
        host_name: Some(engine.host_name()),
        containers: overview.containers.iter().filter(|c| c.state == "running").count(),
        error: overview.engine.error.clone(),
    }
}

/// `http(s)://hub` → `ws(s)://hub/api/v1/agents/connect`.
fn connect_url(hub: &str) -> Result<String, String> {
    let base = hub.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("https://") {
        Ok(format!("wss://{rest}/api/v1/agents/connect"))
    } else if let Some(rest) = base.strip_prefix("http://") {
        Ok(format!("ws://{rest}/api/v1/agents/connect"))
    } else {
        Err(format!("--hub {hub}: give the hub's http:// or https:// address"))
    }
}

/// A stable id for this host, made once and kept in the data dir (the
/// engine's ID is shared by clones of one VM image).
fn host_id(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join("host-id");
    if let Some(id) = read_secret(&path) {
        return Ok(id);
    }
    let id = leakscope_access::new_secret("host-").map_err(|e| e.to_string())?[..37].to_string();
    write_private(&path, &id)?;
    Ok(id)
}

fn read_secret(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Readable by the agent's user only: the credential lets anyone act as this host.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn enroll(args: &AgentArgs, host_id: &str) -> Result<String, String> {
    let token = args.token.clone().ok_or("this agent is not enrolled yet: give it --token (an enrollment token from the hub's /admin or `leakscope agent-token create`)")?;
    let name = args.name.clone().unwrap_or_else(|| leakscope_engine::docker::host_of_address("unix:///var/run/docker.sock"));
    let url = format!("{}/api/v1/agents/enroll", args.hub.trim_end_matches('/'));
    let body = serde_json::json!({ "token": token, "host_id": host_id, "name": name });
    let answer = tokio::task::spawn_blocking(move || ureq::post(&url).timeout(Duration::from_secs(30)).send_json(body))
        .await
        .map_err(|e| e.to_string())?;
    let enrolled: serde_json::Value = match answer {
        Ok(r) => r.into_json().map_err(|e| format!("the hub's answer to the enrollment is not JSON: {e}"))?,
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_json::<serde_json::Value>().ok().and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or_default();
            return Err(format!("the hub refused the enrollment (HTTP {code}): {text}"));
        }
        Err(e) => return Err(format!("cannot reach the hub at {}: {e}", args.hub)),
    };
    let credential = enrolled["credential"].as_str().ok_or("the hub's enrollment answer has no credential")?.to_string();
    write_private(&args.data_dir.join("agent-credential"), &credential)?;
    if let Some(name) = enrolled["name"].as_str() {
        write_private(&args.data_dir.join("agent-name"), name)?;
    }
    tracing::info!(name = %enrolled["name"], "enrolled with the hub");
    Ok(credential)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hub_address_becomes_its_websocket() {
        assert_eq!(super::connect_url("https://hub.example/").unwrap(), "wss://hub.example/api/v1/agents/connect");
        assert_eq!(super::connect_url("http://10.0.0.2:3000").unwrap(), "ws://10.0.0.2:3000/api/v1/agents/connect");
        assert!(super::connect_url("hub.example").is_err());
    }
}
