//! Work that must be done once among several servers sharing one PostgreSQL
//! (automatic captures, notifications) is done by the one holding the
//! `background` lease (`leakscope_db::Lease`); the others stand by and take it
//! over once its holder stops renewing. On a database of its own (SQLite, the
//! default) a server always holds it and nothing is written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use leakscope_db::{Backend, Db, Lease};

use crate::error::EngineError;
use crate::{lock, Engine};

/// A holder that stops renewing (killed, cut off) loses the lease after this.
const TTL: Duration = Duration::from_secs(10);
/// Renewed this often: a few missed renewals (a slow database) do not lose it.
const RENEW_EVERY: Duration = Duration::from_secs(2);

pub(crate) struct Background {
    lease: Option<Lease>,
    held: AtomicBool,
    /// The holder last seen when this server is not it.
    other: Mutex<Option<String>>,
}

impl Background {
    pub(crate) fn open(db: &Db) -> Result<Background, EngineError> {
        let lease = match db.backend() {
            Backend::Postgres => Some(Lease::new(db, "background", &holder_name(), TTL)?),
            Backend::Sqlite => None,
        };
        Ok(Background { held: AtomicBool::new(lease.is_none()), lease, other: Mutex::new(None) })
    }
}

/// This process: host, pid and a random part (a restarted server is a new holder).
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!("{host}:{}:{:08x}", std::process::id(), u32::from_le_bytes(random))
}

pub(crate) async fn hold_forever(engine: Engine) {
    let background = &engine.inner.background;
    let Some(lease) = background.lease.clone() else { return };
    let mut ticker = tokio::time::interval(RENEW_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Bounded: a renewal that hangs past the lease's time must not leave us believing we hold it.
        let held = match tokio::time::timeout(TTL / 2, lease.try_hold()).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the background lease; standing by");
                false
            }
            Err(_) => {
                tracing::warn!("renewing the background lease timed out; standing by");
                false
            }
        };
        let was = background.held.swap(held, Ordering::SeqCst);
        if held != was {
            tracing::info!(holder = lease.holder_name(), "{}", if held { "this server now does the background work (automatic captures, notifications)" } else { "another server does the background work now; standing by" });
        }
        let other = if held { None } else { lease.holder().await.ok().flatten() };
        *lock(&background.other) = other;
    }
}

impl Engine {
    /// Whether this server does the work that runs once among servers sharing a database.
    pub fn holds_background(&self) -> bool {
        self.inner.background.held.load(Ordering::SeqCst)
    }

    /// Who does it: this server's lease name, another's, or `None` without a shared database.
    pub fn background_holder(&self) -> Option<String> {
        let background = &self.inner.background;
        let lease = background.lease.as_ref()?;
        match self.holds_background() {
            true => Some(lease.holder_name().to_string()),
            false => lock(&background.other).clone(),
        }
    }

    /// Gives the lease up at once (the server is stopping), so a standby takes over without waiting.
    pub async fn release_background(&self) {
        let background = &self.inner.background;
        if let Some(lease) = &background.lease {
            background.held.store(false, Ordering::SeqCst);
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "could not give the background lease up; a standby takes over when it expires");
            }
        }
    }
}
