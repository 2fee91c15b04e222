//! Requests for a host reached through an agent travel over that agent's
//! websocket and are answered by the agent's own copy of this app, on its
//! own engine: captures run there, dumps are stored and analysed there, and a
//! dump crosses the network only when a user downloads it (streamed, with
//! flow control). The hub has already signed the user in and checked their
//! role for the route; the agent acts on their behalf.
//!
//! Which requests go to an agent: `/hosts/<host>/…` (except the pages the hub
//! renders itself, whose server functions forward their calls the same way)
//! and `/api/v1/{containers/<name>…, dumps…, jobs…}?host=<host>`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use leakscope_access::{Principal, Role};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::agent_link::{lock, AgentHub, AgentMessage, HubMessage, CHUNK_BYTES, WINDOW_CHUNKS};
use crate::web::{AppState, HttpError};

/// How long the hub waits for an agent to start answering (a dump's object lookup can take a while).
const ANSWER_WITHIN: Duration = Duration::from_secs(300);
/// Request bodies forwarded to agents: forms and JSON.
const LARGEST_BODY: usize = 1024 * 1024;
/// Request headers an agent's app needs; cookies and credentials stay on the hub.
const FORWARDED_HEADERS: [&str; 6] = ["content-type", "accept", "accept-encoding", "range", "if-none-match", "if-modified-since"];

/// A request forwarded to an agent and not yet answered in full.
pub(crate) struct Pending {
    /// The agent connection it went out on.
    serial: u64,
    head: Option<oneshot::Sender<(u16, Vec<(String, String)>)>>,
    body: mpsc::UnboundedSender<Piece>,
}

/// What arrives for a forwarded answer's body.
enum Piece {
    Data(Bytes),
    /// Complete, or broken off with this error.
    End(Option<String>),
}

/// Where a request should be answered: `Some((host, uri on that host))` for an agent's host.
fn agent_route(uri: &Uri) -> Option<(String, String)> {
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    if let ["hosts", host, rest @ ..] = segments.as_slice() {
        // The pages the hub renders itself.
        if matches!(rest, [] | ["containers", _] | ["dumps", _] | ["dumps", _, "diff", _]) {
            return None;
        }
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        return Some((host.to_string(), format!("/{}{query}", rest.join("/"))));
    }
    let forwarded = matches!(segments.as_slice(), ["api", "v1", "containers", _, ..] | ["api", "v1", "dumps", ..] | ["api", "v1", "jobs", ..]);
    if !forwarded {
        return None;
    }
    let mut host = None;
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| match pair.strip_prefix("host=") {
            Some(value) => {
                host = crate::web::query::decode(value);
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
    host.filter(|h| !h.is_empty()).map(|h| (h, format!("{}{query}", uri.path())))
}

/// The hub's middleware (inside the sign-in guard): forwards requests meant for an agent's host.
pub async fn forward_to_agents(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some((host, uri)) = agent_route(request.uri()) else {
        return next.run(request).await;
    };
    let prefixed = request.uri().path().starts_with("/hosts/");
    if !state.engine.is_remote_host(&host) {
        if host != state.engine.host_name() {
            return HttpError(StatusCode::NOT_FOUND, format!("no host named {host}")).into_response();
        }
        // This server's own host: the same route without the prefix, or `?host=` answered here.
        if prefixed {
            return Redirect::temporary(&uri).into_response();
        }
        return next.run(request).await;
    }
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return HttpError(StatusCode::UNAUTHORIZED, "sign in first".into()).into_response();
    };
    let method = request.method().to_string();
    let headers = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| Some((name.to_string(), request.headers().get(*name)?.to_str().ok()?.to_string())))
        .collect();
    let body = match axum::body::to_bytes(request.into_body(), LARGEST_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return HttpError(StatusCode::PAYLOAD_TOO_LARGE, format!("requests to another host carry at most {LARGEST_BODY} bytes")).into_response(),
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return HttpError(StatusCode::UNSUPPORTED_MEDIA_TYPE, "requests to another host carry forms or JSON; upload dumps to the hub itself".into()).into_response();
    };
    // Changes, and every dump download (a dump holds the process's secrets), are in the hub's audit log too.
    if (method != "GET" && method != "HEAD") || uri.split('?').next().is_some_and(|p| p.ends_with("/download")) {
        state.access.audit_on(Some(&host), &principal.name, "forwarded to host", &host, Some(format!("{method} {uri}"))).await;
    }
    match state.hub.call(&host, method, uri, headers, body, &principal).await {
        Ok(mut response) => {
            // The agent's redirects point into its own app: keep them on its host.
            let location = response.headers().get(axum::http::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
            if let Some(location) = location.filter(|l| l.starts_with('/') && !l.starts_with("//")) {
                if let Ok(value) = HeaderValue::from_str(&format!("/hosts/{host}{location}")) {
                    response.headers_mut().insert(axum::http::header::LOCATION, value);
                }
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

impl AgentHub {
    /// Sends a request to the agent of `host` and answers with what its app answers; the body streams.
    pub async fn call(
        self: &Arc<Self>,
        host: &str,
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
        body: String,
        principal: &Principal,
    ) -> Result<Response, HttpError> {
        let agent = lock(&self.connected).iter().find(|(_, c)| c.name == host).map(|(_, c)| (c.serial, c.outbox.clone()));
        let Some((serial, outbox)) = agent else {
            return Err(HttpError(StatusCode::SERVICE_UNAVAILABLE, format!("the agent of host {host} is not connected; its last data is shown on the dashboard")));
        };
        let id = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(id, Pending { serial, head: Some(head_tx), body: body_tx });
        tracing::debug!(id, host, %method, %uri, "forwarding a request to an agent");
        let request = HubMessage::Request { id, method, uri, headers, body, user: principal.name.clone(), role: principal.role.to_string() };
        let stream = TunnelBody { id, rx: body_rx, outbox: outbox.clone(), hub: self.clone(), finished: false };
        if outbox.send(request).is_err() {
            return Err(HttpError(StatusCode::SERVICE_UNAVAILABLE, format!("the agent of host {host} just disconnected")));
        }
        let (status, headers) = match tokio::time::timeout(ANSWER_WITHIN, head_rx).await {
            Ok(Ok(head)) => head,
            Ok(Err(_)) => return Err(HttpError(StatusCode::BAD_GATEWAY, format!("the agent of host {host} disconnected before answering"))),
            Err(_) => return Err(HttpError(StatusCode::GATEWAY_TIMEOUT, format!("the agent of host {host} did not answer within {ANSWER_WITHIN:?}"))),
        };
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                response.headers_mut().append(name, value);
            }
        }
        Ok(response)
    }

    /// The agent's socket task hands over what the agent sent about forwarded requests.
    pub(crate) fn on_response(&self, id: u64, status: u16, headers: Vec<(String, String)>) {
        tracing::debug!(id, status, "an agent answered");
        if let Some(head) = lock(&self.pending).get_mut(&id).and_then(|p| p.head.take()) {
            let _ = head.send((status, headers));
        }
    }

    pub(crate) fn on_chunk(&self, frame: &[u8]) {
        let Some((id, data)) = frame.split_first_chunk::<8>() else { return };
        if let Some(p) = lock(&self.pending).get(&u64::from_be_bytes(*id)) {
            let _ = p.body.send(Piece::Data(Bytes::copy_from_slice(data)));
        }
    }

    pub(crate) fn on_end(&self, id: u64, error: Option<String>) {
        if let Some(p) = lock(&self.pending).remove(&id) {
            let _ = p.body.send(Piece::End(error));
        }
    }

    /// An agent's socket closed: whoever waits on it hears so (their channels close).
    pub(crate) fn drop_calls_of(&self, serial: u64) {
        lock(&self.pending).retain(|_, p| p.serial != serial);
    }
}

/// The hub's hosts as the pages' server functions see them.
pub struct HubHosts {
    pub hub: Arc<AgentHub>,
    pub engine: leakscope_engine::Engine,
}

/// What a page's server function takes from another host at most (an analysis's JSON).
const LARGEST_PAGE_DATA: usize = 256 * 1024 * 1024;

impl leakscope_app::server_fns::RemoteHosts for HubHosts {
    fn is_remote(&self, host: &str) -> bool {
        self.engine.is_remote_host(host)
    }

    fn get(&self, host: &str, uri: String, principal: Principal) -> Pin<Box<dyn std::future::Future<Output = Result<(u16, Vec<u8>), String>> + Send>> {
        let (hub, host) = (self.hub.clone(), host.to_string());
        Box::pin(async move {
            let response = hub.call(&host, "GET".into(), uri, vec![("accept".into(), "application/json".into())], String::new(), &principal).await.map_err(|e| e.1)?;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), LARGEST_PAGE_DATA).await.map_err(|e| format!("host {host}: {e}"))?;
            Ok((status, body.to_vec()))
        })
    }
}

/// A forwarded answer's body: gives the agent a credit for each chunk passed on, and cancels
/// the request on the agent if the client goes away first.
struct TunnelBody {
    id: u64,
    rx: mpsc::UnboundedReceiver<Piece>,
    outbox: mpsc::UnboundedSender<HubMessage>,
    hub: Arc<AgentHub>,
    finished: bool,
}

impl futures::Stream for TunnelBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(bytes))) => {
                let _ = self.outbox.send(HubMessage::Credit { id: self.id, chunks: 1 });
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Piece::End(None))) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Piece::End(Some(error)))) => {
                self.finished = true;
                Poll::Ready(Some(Err(std::io::Error::other(error))))
            }
            // The socket closed mid-answer: the client sees a cut body, not a short one that looks whole.
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(Err(std::io::Error::other("the agent's connection closed before the answer was complete"))))
            }
        }
    }
}

impl Drop for TunnelBody {
    fn drop(&mut self) {
        if !self.finished && lock(&self.hub.pending).remove(&self.id).is_some() {
            let _ = self.outbox.send(HubMessage::Cancel { id: self.id });
        }
    }
}

/// A host's own copy of the app, answering the hub's requests for that host (never on a port):
/// an agent's, or one for an engine `serve` reaches directly.
pub fn host_app(data_dir: &std::path::Path, site: &std::path::Path, engine: &leakscope_engine::Engine) -> Result<axum::Router, String> {
    let leptos_options = leptos::prelude::LeptosOptions::builder()
        .output_name("leakscope")
        .site_root(site.display().to_string())
        .site_pkg_dir("pkg")
        .build();
    let access = leakscope_access::AccessState::open(data_dir, None, false).map_err(|e| e.to_string())?;
    // Notifications about this host are the hub's: this one is never started.
    let config = leakscope_notify::NotifierConfig {
        public_url: String::new(),
        rules: leakscope_notify::Rules { limit_share: 0.9, repeat_ms: 3_600_000 },
        per_minute: 20,
    };
    let notifier = leakscope_notify::Notifier::open(&data_dir.join("leakscope.db"), None, config, std::sync::Arc::new(|_: &str, _: &str, _: &str, _: &str| {}))
        .map_err(|e| e.to_string())?;
    let state = crate::web::AppState { leptos_options, engine: engine.clone(), access, notifier, hub: Default::default() };
    Ok(crate::serve::router(state, crate::serve::Door::Hub))
}

/// The agent's side: answers the hub's requests with its own app, one task per request.
pub struct AgentSide {
    app: axum::Router,
    out: mpsc::Sender<tokio_tungstenite::tungstenite::Message>,
    streams: Arc<Mutex<HashMap<u64, (Arc<Semaphore>, tokio::task::AbortHandle)>>>,
}

impl AgentSide {
    pub fn new(app: axum::Router, out: mpsc::Sender<tokio_tungstenite::tungstenite::Message>) -> Self {
        Self { app, out, streams: Default::default() }
    }

    pub fn handle(&self, message: HubMessage) {
        match message {
            HubMessage::Request { id, method, uri, headers, body, user, role } => {
                tracing::debug!(id, %method, %uri, %user, "a request from the hub");
                let credits = Arc::new(Semaphore::new(WINDOW_CHUNKS as usize));
                // Held while the task starts, so that its own removal comes after this insert.
                let mut streams = lock(&self.streams);
                let task = tokio::spawn(answer(self.app.clone(), self.out.clone(), credits.clone(), self.streams.clone(), id, (method, uri, headers, body, user, role)));
                streams.insert(id, (credits, task.abort_handle()));
            }
            HubMessage::Credit { id, chunks } => {
                if let Some((credits, _)) = lock(&self.streams).get(&id) {
                    credits.add_permits(chunks.min(WINDOW_CHUNKS) as usize);
                }
            }
            HubMessage::Cancel { id } => {
                if let Some((_, task)) = lock(&self.streams).remove(&id) {
                    task.abort();
                }
            }
            // Handled by the agent's connection loop.
            HubMessage::OomKillReceived { .. } => {}
        }
    }
}

impl Drop for AgentSide {
    /// The socket is gone: so is everyone waiting for these answers.
    fn drop(&mut self) {
        for (_, (_, task)) in lock(&self.streams).drain() {
            task.abort();
        }
    }
}

type Forwarded = (String, String, Vec<(String, String)>, String, String, String);

async fn answer(
    app: axum::Router,
    out: mpsc::Sender<tokio_tungstenite::tungstenite::Message>,
    credits: Arc<Semaphore>,
    streams: Arc<Mutex<HashMap<u64, (Arc<Semaphore>, tokio::task::AbortHandle)>>>,
    id: u64,
    (method, uri, headers, body, user, role): Forwarded,
) {
    use tokio_tungstenite::tungstenite::Message;
    let send = |m: AgentMessage| Message::Text(serde_json::to_string(&m).unwrap_or_default().into());
    let response = match build_request(&method, &uri, &headers, body, &user, &role) {
        Ok(request) => match tower::ServiceExt::oneshot(app, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(e) => e.into_response(),
    };
    let head = AgentMessage::Response {
        id,
        status: response.status().as_u16(),
        headers: response.headers().iter().filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string()))).collect(),
    };
    let mut error = None;
    if out.send(send(head)).await.is_ok() {
        let mut data = response.into_body().into_data_stream();
        'body: while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            };
            for piece in chunk.chunks(CHUNK_BYTES) {
                match credits.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => break 'body,
                }
                let mut frame = Vec::with_capacity(8 + piece.len());
                frame.extend_from_slice(&id.to_be_bytes());
                frame.extend_from_slice(piece);
                if out.send(Message::Binary(frame.into())).await.is_err() {
                    break 'body;
                }
            }
        }
    }
    let _ = out.send(send(AgentMessage::End { id, error })).await;
    lock(&streams).remove(&id);
}

fn build_request(method: &str, uri: &str, headers: &[(String, String)], body: String, user: &str, role: &str) -> Result<Request, HttpError> {
    let bad = |e: String| HttpError(StatusCode::BAD_REQUEST, format!("the hub forwarded a request this agent cannot read: {e}"));
    let role: Role = role.parse().map_err(|_| bad(format!("unknown role {role}")))?;
    let mut builder = axum::http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let mut request = builder.body(Body::from(body)).map_err(|e| bad(e.to_string()))?;
    // The hub already limited the role to what it is on this host.
    let principal = Principal { name: user.to_string(), role, csrf: None, hosts: None };
    let me = leakscope_model::Me { name: principal.name.clone(), role: role.to_string(), csrf: None };
    request.extensions_mut().insert(me);
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(leakscope_model::CspNonce(String::new()));
    request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 0))));
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::agent_route;

    fn route(uri: &str) -> Option<(String, String)> {
        agent_route(&uri.parse().unwrap())
    }

    #[test]
    fn requests_for_an_agents_host_are_recognised() {
        assert_eq!(route("/hosts/edge-1/containers/web/memory.svg?range=6h"), Some(("edge-1".into(), "/containers/web/memory.svg?range=6h".into())));
        assert_eq!(route("/hosts/edge-1/dumps/d1/download"), Some(("edge-1".into(), "/dumps/d1/download".into())));
        // Pages the hub renders itself.
        assert_eq!(route("/hosts/edge-1/containers/web"), None);
        assert_eq!(route("/hosts/edge-1/dumps/d1"), None);
        assert_eq!(route("/hosts/edge-1/dumps/a/diff/b"), None);
        assert_eq!(route("/api/v1/containers/web/memory?host=edge-1&range=1h"), Some(("edge-1".into(), "/api/v1/containers/web/memory?range=1h".into())));
        assert_eq!(route("/api/v1/dumps?host=edge%2D1"), Some(("edge-1".into(), "/api/v1/dumps".into())));
        // The list of containers is the hub's (it filters by host itself).
        assert_eq!(route("/api/v1/containers?host=edge-1"), None);
        assert_eq!(route("/api/v1/containers/web"), None);
        assert_eq!(route("/api/v1/containers/web?host=edge-1"), Some(("edge-1".into(), "/api/v1/containers/web".into())));
        assert_eq!(route("/api/v1/hosts?host=edge-1"), None);
    }
}
