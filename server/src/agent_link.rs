//! What the hub and its agents share: the messages on the agent's websocket
//! and the hub's table of connected agents (read by `/api/v1/hosts` and
//! `/metrics`, written by the websocket handler in `hub.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use leakscope_access::AgentInfo;
use leakscope_model::HostInfo;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// An agent that says nothing for this long is taken for gone.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// Sends one message on a hub–agent socket, or gives up after SILENCE_LIMIT:
/// on a cut link a send blocks once the TCP buffer is full, and the loop that
/// waits in it would never get to notice the silence.
pub async fn send_within<S, M>(socket: &mut S, message: M) -> Result<(), String>
where
    S: futures::Sink<M> + Unpin,
    S::Error: std::fmt::Display,
{
    match tokio::time::timeout(SILENCE_LIMIT, futures::SinkExt::send(socket, message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("a message could not be sent within {} s: the link is gone", SILENCE_LIMIT.as_secs())),
    }
}
/// Why the hub closes an agent's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    No,
    /// A newer connection of the same agent took over.
    Replaced,
    Revoked,
}

/// The close reason an agent reads as "stop, do not come back".
pub const REVOKED: &str = "revoked";

/// What an agent sends (JSON text frames).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello { version: String, engine: AgentEngine },
    /// Every few seconds: the engine's state and its containers as its dashboard would list them.
    Heartbeat {
        engine: AgentEngine,
        #[serde(default)]
        containers: Vec<leakscope_model::ContainerInfo>,
    },
    /// An OOM kill on the agent's host (sent when it happens, or after a reconnect when the link was down).
    OomKill { kill: leakscope_model::alerts::OomKill },
    /// The status and headers of the answer to request `id`; its body follows in binary
    /// frames (the id as 8 big-endian bytes, then the bytes), one per credit the hub gave.
    Response { id: u64, status: u16, headers: Vec<(String, String)> },
    /// The body of answer `id` is complete (`error`: it broke off).
    End { id: u64, error: Option<String> },
}

/// What the hub sends an agent (JSON text frames).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMessage {
    /// Answer this HTTP request with the agent's own app, on behalf of `user` (the hub checked
    /// their role for this route already).
    Request {
        id: u64,
        method: String,
        /// Path and query as the agent's own app knows them (no `/hosts/<host>` prefix).
        uri: String,
        headers: Vec<(String, String)>,
        /// Forms and JSON only (a dump upload goes to the hub's own store).
        body: String,
        user: String,
        role: String,
    },
    /// The hub passed `chunks` more chunks of answer `id` on to its client.
    Credit { id: u64, chunks: u32 },
    /// Nobody waits for answer `id` any more (the client went away).
    Cancel { id: u64 },
    /// The hub has this OOM kill (the agent sends it again after a reconnect until it hears this).
    OomKillReceived { kill: leakscope_model::alerts::OomKill },
}

/// The id of a binary frame that is not a body chunk but a heartbeat: its JSON, deflated.
/// A heartbeat repeats every container's field names and sparkline every sweep; deflated
/// it is several times smaller on the wire (tungstenite has no permessage-deflate).
pub const HEARTBEAT_FRAME: u64 = u64::MAX;

/// A heartbeat as a binary frame (`HEARTBEAT_FRAME`, then the deflated JSON).
pub fn pack_heartbeat(engine: AgentEngine, containers: Vec<leakscope_model::ContainerInfo>) -> Vec<u8> {
    use std::io::Write;
    let json = serde_json::to_vec(&AgentMessage::Heartbeat { engine, containers }).unwrap_or_default();
    let mut packed = flate2::write::DeflateEncoder::new(HEARTBEAT_FRAME.to_be_bytes().to_vec(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = packed.write_all(&json);
    packed.finish().unwrap_or_default()
}

/// The heartbeat in a binary frame, if that is what it holds (`None`: a body chunk).
pub fn unpack_heartbeat(frame: &[u8]) -> Option<Result<AgentMessage, String>> {
    use std::io::Read;
    let (id, deflated) = frame.split_first_chunk::<8>()?;
    if u64::from_be_bytes(*id) != HEARTBEAT_FRAME {
        return None;
    }
    // A heartbeat of 10 000 containers is a few MiB: more is not one.
    let mut json = Vec::new();
    let read = flate2::read::DeflateDecoder::new(deflated).take(64 << 20).read_to_end(&mut json);
    Some(read.map_err(|e| e.to_string()).and_then(|_| serde_json::from_slice(&json).map_err(|e| e.to_string())))
}

/// How many body chunks an agent may send ahead of the hub's client (flow control: a slow
/// download holds at most this much in the hub, and other requests share the socket).
pub const WINDOW_CHUNKS: u32 = 16;
/// Body chunks on the socket are at most this big.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The agent's Docker engine as it sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentEngine {
    pub address: String,
    pub connected: bool,
    pub host_name: Option<String>,
    pub containers: usize,
    pub error: Option<String>,
}

pub(crate) struct Connected {
    /// Which connection of the agent this is (a reconnect replaces an older one).
    pub serial: u64,
    pub last_seen_ms: i64,
    pub engine: AgentEngine,
    /// Set to close the socket.
    pub close: watch::Sender<Closing>,
    /// The host's display name (the agent's name).
    pub name: String,
    /// Messages for the agent, sent by its socket's task.
    pub outbox: tokio::sync::mpsc::UnboundedSender<HubMessage>,
}

/// The agents connected to this hub process.
#[derive(Default)]
pub struct AgentHub {
    pub(crate) connected: Mutex<HashMap<i64, Connected>>,
    pub(crate) serials: std::sync::atomic::AtomicU64,
    /// Requests forwarded to agents and not yet answered in full (see `tunnel.rs`).
    pub(crate) pending: Mutex<HashMap<u64, crate::tunnel::Pending>>,
    pub(crate) calls: std::sync::atomic::AtomicU64,
    /// Engines `serve` reaches directly besides its own (see `direct_hosts.rs`).
    pub(crate) direct: Mutex<Vec<(String, leakscope_engine::Engine)>>,
    /// OOM kills agents reported lately: one sent again (its acknowledgement was lost on a
    /// cut link) is not notified twice.
    pub(crate) recent_oom_kills: Mutex<std::collections::VecDeque<leakscope_model::alerts::OomKill>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AgentHub {
    /// True the first time this kill is reported (of the last 1 000).
    pub(crate) fn first_report(&self, kill: &leakscope_model::alerts::OomKill) -> bool {
        let mut recent = lock(&self.recent_oom_kills);
        if recent.contains(kill) {
            return false;
        }
        if recent.len() >= 1000 {
            recent.pop_front();
        }
        recent.push_back(kill.clone());
        true
    }

    /// Hosts reached directly besides this server's own, and through agents: every enrolled,
    /// unrevoked one, connected or not.
    pub fn hosts(&self, agents: &[AgentInfo]) -> Vec<HostInfo> {
        let mut hosts: Vec<HostInfo> = lock(&self.direct)
            .iter()
            .map(|(name, engine)| {
                let status = engine.status();
                HostInfo { name: name.clone(), connected: status.connected, last_seen_ms: status.last_seen_ms, via: "direct".into(), address: status.address }
            })
            .collect();
        let connected = lock(&self.connected);
        hosts.extend(agents
            .iter()
            .filter(|a| a.revoked_ms.is_none())
            .map(|a| {
                let live = connected.get(&a.id);
                HostInfo {
                    name: a.name.clone(),
                    connected: live.is_some_and(|c| c.engine.connected),
                    last_seen_ms: live.map(|c| c.last_seen_ms).or(a.last_seen_ms),
                    via: "agent".into(),
                    address: live.map(|c| c.engine.address.clone()).unwrap_or_default(),
                }
            }));
        hosts
    }

    pub fn revoke(&self, id: i64) {
        if let Some(c) = lock(&self.connected).get(&id) {
            let _ = c.close.send(Closing::Revoked);
        }
    }
}

