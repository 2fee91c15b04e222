//! `serve --docker-host A --docker-host NAME=URL …`: the engines after the
//! first are watched directly, for hosts where nobody may install an agent.
//! Each gets what an agent would run — an in-process engine with its own
//! store (`<data>/hosts/<name>`) and its own copy of the app — linked to the
//! hub in process instead of over a websocket, so the dashboard, pages,
//! captures, analyses and downloads treat it exactly like an agent's host.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use leakscope_engine::{now_ms, Engine, EngineConfig};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::agent_link::{lock, AgentEngine, AgentHub, AgentMessage, Closing, Connected, HubMessage};
use crate::tunnel::AgentSide;

/// How often a direct host's containers are handed to the hub's overview.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

pub async fn start(
    hub: &Arc<AgentHub>,
    hub_engine: &Engine,
    values: &[String],
    cert_paths: &[String],
    template: &EngineConfig,
    data_dir: &Path,
    site: &Path,
) -> Result<(), String> {
    for value in values {
        let (name, address) = leakscope_engine::docker::split_named_address(value);
        let cert_path = crate::serve::cert_path_for(cert_paths, name.as_deref(), &address);
        let name = match name {
            Some(name) => name,
            // Its own `docker info` name, once it has answered (a few seconds at most).
            None => leakscope_engine::docker::connect_with(&address, cert_path.as_deref()).await.map_err(|e| format!("--docker-host {value}: {e}"))?.host_name,
        };
        let taken = name == hub_engine.host_name() || lock(&hub.direct).iter().any(|(n, _)| *n == name);
        let fine = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if taken || !fine {
            return Err(format!("--docker-host {value}: give this engine a host name of its own (NAME=URL; letters, digits, '.', '-', '_')"));
        }
        let dir = data_dir.join("hosts").join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut config = template.clone();
        config.data_dir = dir.clone();
        config.docker_host = Some(address);
        config.docker_cert_path = cert_path;
        config.host_name = Some(name.clone());
        config.dump_store = template.dump_store.as_deref().map(|url| leakscope_blobs::child_url(url, &format!("hosts/{name}")));
        let engine = Engine::start(config).map_err(|e| format!("--docker-host {value}: {e}"))?;
        let app = crate::tunnel::host_app(&dir, site, &engine)?;
        attach(hub, hub_engine.clone(), name, engine, app);
    }
    Ok(())
}

/// Links a direct host's app to the hub as an agent's socket would: requests in, answers out,
/// and its containers into the hub's overview.
fn attach(hub: &Arc<AgentHub>, hub_engine: Engine, name: String, engine: Engine, app: axum::Router) {
    let serial = hub.serials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Below every agent's id (those are positive row ids).
    let id = -1 - serial as i64;
    let (outbox, mut requests) = mpsc::unbounded_channel::<HubMessage>();
    let (close, _) = watch::channel(Closing::No);
    lock(&hub.connected).insert(id, Connected { serial, last_seen_ms: now_ms(), engine: AgentEngine::default(), close, name: name.clone(), outbox });
    lock(&hub.direct).push((name.clone(), engine.clone()));
    let hub = hub.clone();
    tokio::spawn(async move {
        let (out, mut answers) = mpsc::channel::<Message>(64);
        let side = AgentSide::new(app, out);
        let mut publish = tokio::time::interval(PUBLISH_EVERY);
        let mut oom_kills = engine.subscribe_oom_kills();
        loop {
            tokio::select! {
                Ok(kill) = oom_kills.recv() => hub_engine.announce_oom_kill(kill),
                Some(request) = requests.recv() => side.handle(request),
                Some(answer) = answers.recv() => match answer {
                    Message::Binary(frame) => hub.on_chunk(&frame),
                    Message::Text(text) => match serde_json::from_str::<AgentMessage>(&text) {
                        Ok(AgentMessage::Response { id, status, headers }) => hub.on_response(id, status, headers),
                        Ok(AgentMessage::End { id, error }) => hub.on_end(id, error),
                        _ => {}
                    },
                    _ => {}
                },
                _ = publish.tick() => {
                    let overview = engine.overview();
                    // While its engine is away, the last list stays (marked stale by the hub).
                    let containers = overview.engine.connected.then(|| overview.containers.clone());
                    hub_engine.set_remote_host(&name, containers, overview.engine.connected);
                    if let Some(c) = lock(&hub.connected).get_mut(&id) {
                        c.engine = AgentEngine {
                            address: overview.engine.address.clone(),
                            connected: overview.engine.connected,
                            host_name: Some(name.clone()),
                            containers: overview.containers.len(),
                            error: overview.engine.error.clone(),
                        };
                        if overview.engine.connected {
                            c.last_seen_ms = now_ms();
                        }
                    }
                }
            }
        }
    });
}
