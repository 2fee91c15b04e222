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
}

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
}

/// The agents connected to this hub process.
#[derive(Default)]
pub struct AgentHub {
    pub(crate) connected: Mutex<HashMap<i64, Connected>>,
    pub(crate) serials: std::sync::atomic::AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AgentHub {
    /// Hosts reached through agents: every enrolled, unrevoked one, connected or not.
    pub fn hosts(&self, agents: &[AgentInfo]) -> Vec<HostInfo> {
        let connected = lock(&self.connected);
        agents
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
            })
            .collect()
    }

    pub fn revoke(&self, id: i64) {
        if let Some(c) = lock(&self.connected).get(&id) {
            let _ = c.close.send(Closing::Revoked);
        }
    }
}

