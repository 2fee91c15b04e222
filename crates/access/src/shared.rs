//! The access store as the running server shares it: one connection behind
//! a lock, the sign-in throttle, the first-run setup secret, and one-time
//! messages for the next page (a new token is shown once, never in a URL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{AccessError, AccessStore, LoginThrottle};

/// Failed sign-ins allowed per client address and per user name before a pause.
const LOGIN_FAILURES: u32 = 5;
const LOGIN_PAUSE: Duration = Duration::from_secs(300);
/// How long a one-time message waits for the page it is meant for.
const FLASH_TTL: Duration = Duration::from_secs(120);

pub struct AccessState {
    store: AccessStore,
    pub throttle: LoginThrottle,
    /// The one-time first-run link's secret, while no admin exists.
    setup_token: Mutex<Option<String>>,
    /// Mark cookies `Secure` (behind TLS); also set per request by `X-Forwarded-Proto: https`.
    pub secure_cookies: bool,
    /// Per principal name: a message for their next page, and when it was left.
    flash: Mutex<HashMap<String, (String, Instant)>>,
}

pub type SharedAccess = Arc<AccessState>;

/// A lock that survives a panic elsewhere (the data behind it stays consistent per call).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Equal without an early exit, so timing does not tell how much matched.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl AccessState {
    /// The data folder's SQLite file, or `database` (`--database`: a file or `postgres://…`).
    pub fn open(data_dir: &std::path::Path, database: Option<&str>, secure_cookies: bool) -> Result<SharedAccess, AccessError> {
        let store = match database {
            Some(url) => AccessStore::open_url(url)?,
            None => AccessStore::open(&data_dir.join("leakscope.db"))?,
        };
        let setup_token = if store.has_admin()? { None } else { Some(crate::new_secret("")?) };
        Ok(Arc::new(AccessState {
            store,
            throttle: LoginThrottle::new(LOGIN_FAILURES, LOGIN_PAUSE),
            setup_token: Mutex::new(setup_token),
            secure_cookies,
            flash: Mutex::new(HashMap::new()),
        }))
    }

    /// `/setup/<secret>` while no admin exists.
    pub fn setup_path(&self) -> Option<String> {
        lock(&self.setup_token).as_ref().map(|t| format!("/setup/{t}"))
    }

    pub fn setup_secret_ok(&self, secret: &str) -> bool {
        lock(&self.setup_token).as_deref().is_some_and(|t| same_secret(t, secret))
    }

    /// Takes the setup secret out under the lock (two visitors cannot both become admin).
    pub fn claim_setup(&self, secret: &str) -> Option<String> {
        let mut slot = lock(&self.setup_token);
        match slot.as_deref() {
            Some(t) if same_secret(t, secret) => slot.take(),
            _ => None,
        }
    }

    /// Puts a claimed secret back (creating the admin failed).
    pub fn return_setup(&self, secret: String) {
        *lock(&self.setup_token) = Some(secret);
    }

    /// Runs a store call on the blocking pool (argon2 and the database calls block).
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&AccessStore) -> Result<T, AccessError> + Send + 'static,
    ) -> Result<T, AccessError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this.store))
            .await
            .map_err(|e| AccessError::Internal(format!("the access store call did not finish: {e}")))?
    }

    /// Writes an audit entry; a failure to write is logged, never shown.
    pub async fn audit(self: &Arc<Self>, actor: &str, action: &str, target: &str, detail: Option<String>) {
        self.audit_on(None, actor, action, target, detail).await
    }

    /// As `audit`, for an action done on another host (`None`: this server's own).
    pub async fn audit_on(self: &Arc<Self>, host: Option<&str>, actor: &str, action: &str, target: &str, detail: Option<String>) {
        let (actor, action, target, host) = (actor.to_string(), action.to_string(), target.to_string(), host.map(str::to_string));
        if let Err(e) = self.with(move |s| s.audit(now_ms(), &actor, &action, &target, detail.as_deref(), host.as_deref())).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    /// Leaves a message for `who`'s next page (replacing an unread one).
    pub fn put_flash(&self, who: &str, message: String) {
        let mut flash = lock(&self.flash);
        flash.retain(|_, (_, at)| at.elapsed() < FLASH_TTL);
        flash.insert(who.to_string(), (message, Instant::now()));
    }

    /// The message left for `who`, once.
    pub fn take_flash(&self, who: &str) -> Option<String> {
        lock(&self.flash).remove(who).filter(|(_, at)| at.elapsed() < FLASH_TTL).map(|(m, _)| m)
    }
}
