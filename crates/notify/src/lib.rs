//! Alerts where a team already looks. The server hands the notifier the
//! engine's live overview (one per sampling tick) and its new OOM kills; the
//! notifier decides what is new (`rules`), keeps what it said (`store`, so a
//! restart repeats nothing) and posts to every webhook (`deliver`), writing
//! each delivery and failure to the audit log through the sink it was given.

mod deliver;
mod rules;
mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leakscope_model::alerts::{DeliveryResult, NewWebhook, OomKill, WebhookInfo};
use leakscope_model::Overview;
use tokio::sync::{broadcast, watch};

pub use deliver::{check_url, destination, payload};
pub use rules::{Alert, AlertKind, Rules, Watcher};
pub use store::{AlertState, NotifyStore, Webhook, TABLES};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Db(#[from] leakscope_db::DbError),
    #[error("{0}")]
    Internal(String),
}

/// The shape of a receiver's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Leakscope's own JSON (every field), for scripts and generic receivers.
    Json,
    /// Slack's incoming webhooks (`{"text"}` with mrkdwn).
    Slack,
    /// Mattermost's incoming webhooks (`{"text"}` with Markdown).
    Mattermost,
    /// Microsoft Teams (an Office 365 connector card).
    Teams,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Json => "json",
            Shape::Slack => "slack",
            Shape::Mattermost => "mattermost",
            Shape::Teams => "teams",
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = NotifyError;
    fn from_str(s: &str) -> Result<Self, NotifyError> {
        match s.trim() {
            "" | "json" => Ok(Shape::Json),
            "slack" => Ok(Shape::Slack),
            "mattermost" => Ok(Shape::Mattermost),
            "teams" => Ok(Shape::Teams),
            other => Err(NotifyError::Invalid(format!("'{other}' is not a webhook kind (json, slack, mattermost or teams)"))),
        }
    }
}

/// Writes one audit entry: (actor, action, target, detail).
pub type AuditSink = Arc<dyn Fn(&str, &str, &str, &str) + Send + Sync>;
/// Whether this server sends notifications now (one of several sharing a database does).
pub type SendGate = Arc<dyn Fn() -> bool + Send + Sync>;

/// The actor of what the notifier does by itself.
const ACTOR: &str = "leakscope";

#[derive(Clone, Debug)]
pub struct NotifierConfig {
    /// The address team mates open Leakscope at; links in messages start with it.
    pub public_url: String,
    pub rules: Rules,
    /// Deliveries per webhook per minute; more are dropped (and audited) rather than flood a channel.
    pub per_minute: u32,
}

pub struct Notifier {
    store: Mutex<NotifyStore>,
    watcher: Mutex<Watcher>,
    client: ureq::Agent,
    config: NotifierConfig,
    audit: AuditSink,
    /// Per webhook id: the minute's start and deliveries in it.
    budget: Mutex<HashMap<i64, (Instant, u32)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Notifier {
    /// `database` (`--database`: a file or `postgres://…`), else the SQLite file `db`.
    pub fn open(db: &Path, database: Option<&str>, config: NotifierConfig, audit: AuditSink) -> Result<Arc<Self>, NotifyError> {
        let store = match database {
            Some(url) => NotifyStore::on(leakscope_db::Db::open(url)?)?,
            None => NotifyStore::open(db)?,
        };
        let watcher = Watcher::new(config.rules, store.alert_states()?);
        Ok(Arc::new(Notifier {
            store: Mutex::new(store),
            watcher: Mutex::new(watcher),
            client: deliver::client(),
            config,
            audit,
            budget: Mutex::new(HashMap::new()),
        }))
    }

    /// The database calls block: off the async threads.
    async fn with_store<T: Send + 'static>(self: &Arc<Self>, f: impl FnOnce(&NotifyStore) -> Result<T, NotifyError> + Send + 'static) -> Result<T, NotifyError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&lock(&this.store))).await.map_err(|e| NotifyError::Internal(e.to_string()))?
    }

    pub async fn webhooks(self: &Arc<Self>) -> Result<Vec<WebhookInfo>, NotifyError> {
        self.with_store(|s| s.webhook_infos()).await
    }

    pub async fn add_webhook(self: &Arc<Self>, new: NewWebhook, created_by: &str) -> Result<WebhookInfo, NotifyError> {
        let name = new.name.trim().to_string();
        if name.is_empty() || name.len() > 100 {
            return Err(NotifyError::Invalid("a webhook needs a name of 1 to 100 characters".into()));
        }
        check_url(&new.url).map_err(NotifyError::Invalid)?;
        let shape: Shape = new.kind.as_deref().unwrap_or("json").parse()?;
        let (url, by) = (new.url.trim().to_string(), created_by.to_string());
        let id = self.with_store(move |s| s.add_webhook(&name, &url, shape, Some(&by), now_ms())).await?;
        let info = self.webhooks().await?.into_iter().find(|w| w.id == id).ok_or_else(|| NotifyError::Internal("the new webhook is gone".into()))?;
        (self.audit)(created_by, "webhook.create", &info.name, &format!("{} to {}", info.kind, info.destination));
        Ok(info)
    }

    /// False when there was no such webhook.
    pub async fn remove_webhook(self: &Arc<Self>, id: i64, by: &str) -> Result<bool, NotifyError> {
        let removed = self.with_store(move |s| s.remove_webhook(id)).await?;
        if let Some(name) = &removed {
            (self.audit)(by, "webhook.delete", name, "");
        }
        Ok(removed.is_some())
    }

    /// Sends a test message to one webhook now (no retries: the admin is waiting). `None`: no such webhook.
    pub async fn test_webhook(self: &Arc<Self>, id: i64, by: &str) -> Result<Option<DeliveryResult>, NotifyError> {
        let Some(webhook) = self.with_store(move |s| s.webhook(id)).await? else { return Ok(None) };
        let alert = Alert {
            kind: AlertKind::Test,
            container: String::new(),
            host: String::new(),
            title: "Test from Leakscope".into(),
            sentence: format!("{by} sent this test from the admin page. Leak verdicts, OOM kills and memory over {:.0} % of a limit will arrive here.", self.config.rules.limit_share * 100.0),
            verdict: None,
            time_to_limit_seconds: None,
            working_set_bytes: None,
            limit_bytes: None,
            time_ms: now_ms(),
            held: 0,
        };
        Ok(Some(self.deliver(&webhook, &alert, false).await))
    }

    /// Follows the engine until the server stops. While `sends()` is false (another server
    /// sharing the database sends), it keeps following, so that it knows what was already
    /// said when it takes over, but sends and stores nothing.
    pub fn spawn(self: &Arc<Self>, mut overviews: watch::Receiver<Arc<Overview>>, mut oom_kills: broadcast::Receiver<OomKill>, sends: SendGate) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = overviews.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let overview = overviews.borrow_and_update().clone();
                        let (alerts, changes) = lock(&this.watcher).observe(&overview, now_ms());
                        if !sends() {
                            continue;
                        }
                        this.keep(changes).await;
                        for alert in alerts {
                            this.send(alert);
                        }
                    }
                    kill = oom_kills.recv() => match kill {
                        Ok(kill) => {
                            let info = overviews.borrow().containers.iter().find(|c| c.name == kill.container && c.host == kill.host).cloned();
                            let (alert, changes) = lock(&this.watcher).oom(&kill, info.as_ref(), now_ms());
                            if !sends() {
                                continue;
                            }
                            this.keep(changes).await;
                            if let Some(alert) = alert {
                                this.send(alert);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "notifications fell behind the engine's OOM kills"),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
    }

    async fn keep(self: &Arc<Self>, changes: Vec<(String, &'static str, AlertState)>) {
        if changes.is_empty() {
            return;
        }
        let kept = self
            .with_store(move |s| {
                for (subject, kind, state) in &changes {
                    s.save_state(subject, kind, *state)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = kept {
            tracing::warn!(error = %e, "could not keep the notification state; a restart may repeat a message");
        }
    }

    /// To every webhook, each in its own task (a slow receiver delays no other).
    fn send(self: &Arc<Self>, alert: Alert) {
        let this = self.clone();
        tokio::spawn(async move {
            let webhooks = match this.with_store(|s| s.webhooks()).await {
                Ok(w) => w,
                Err(e) => return tracing::warn!(error = %e, "cannot read the webhooks"),
            };
            for webhook in webhooks {
                let (this, alert) = (this.clone(), alert.clone());
                tokio::spawn(async move {
                    if this.over_budget(webhook.id) {
                        (this.audit)(ACTOR, "webhook.dropped", &webhook.name, &format!("{}: over {} messages a minute", what(&alert), this.config.per_minute));
                        return;
                    }
                    this.deliver(&webhook, &alert, true).await;
                });
            }
        });
    }

    fn over_budget(&self, webhook: i64) -> bool {
        let mut budget = lock(&self.budget);
        let (start, count) = budget.entry(webhook).or_insert((Instant::now(), 0));
        if start.elapsed() >= Duration::from_secs(60) {
            *start = Instant::now();
            *count = 0;
        }
        *count += 1;
        *count > self.config.per_minute
    }

    async fn deliver(self: &Arc<Self>, webhook: &Webhook, alert: &Alert, retry: bool) -> DeliveryResult {
        let link = match alert.kind {
            AlertKind::Test => self.config.public_url.clone(),
            // With its host: the link opens the right container wherever it runs.
            _ => format!("{}/hosts/{}/containers/{}", self.config.public_url.trim_end_matches('/'), alert.host, alert.container),
        };
        let body = payload(webhook.kind, alert, &link);
        let (client, url) = (self.client.clone(), webhook.url.clone());
        let result = tokio::task::spawn_blocking(move || deliver::post(&client, &url, &body, retry))
            .await
            .unwrap_or_else(|e| DeliveryResult { delivered: false, status: None, detail: format!("not delivered: {e}") });
        let action = if result.delivered { "webhook.delivered" } else { "webhook.failed" };
        (self.audit)(ACTOR, action, &webhook.name, &format!("{}: {}", what(alert), result.detail));
        if !result.delivered {
            tracing::warn!(webhook = %webhook.name, detail = %result.detail, "a notification was not delivered");
        }
        let (id, detail) = (webhook.id, result.detail.clone());
        if let Err(e) = self.with_store(move |s| s.record_result(id, &detail, now_ms())).await {
            tracing::warn!(error = %e, "could not record a webhook's last result");
        }
        result
    }
}

fn what(alert: &Alert) -> String {
    match alert.kind {
        AlertKind::Test => "test".into(),
        kind => format!("{} {} on {}", kind.as_str(), alert.container, alert.host),
    }
}
