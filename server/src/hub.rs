//! The hub's side of host agents: enrollment, the API to list and revoke
//! agents, and the one long-lived websocket each agent dials out to
//! (`/api/v1/agents/connect`, over the same axum server, so an agent behind
//! NAT or a firewall that allows outgoing HTTPS reaches it).
//!
//! What flows: the agent's hello (its host, engine and version) and a
//! heartbeat every few seconds with its engine's state and containers;
//! requests for its host (pages' data, charts, captures, analyses, downloads:
//! see `tunnel.rs`) and their streamed answers. Revoking an agent closes its
//! socket at once and the agent stops.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Form, Json, Router};
use leakscope_access::{AgentInfo, Principal};
use leakscope_engine::now_ms;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agent_link::{lock, send_within, AgentEngine, AgentHub, AgentMessage, Closing, Connected, HubMessage, REVOKED, SILENCE_LIMIT};
use crate::web::{admin_back, AppState, HttpError, SharedAccess};

const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The documented routes (see `openapi.rs`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_enrollment))
        .routes(routes!(enroll))
        .routes(routes!(list_agents))
        .routes(routes!(revoke_agent))
        .routes(routes!(connect))
}

/// The admin page's forms.
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/agents/enrollments", post(create_enrollment_form)).route("/admin/agents/{id}/revoke", post(revoke_form))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewEnrollment {
    /// The host's display name; without it the agent names itself (its machine's host name or `--name`).
    pub name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrollmentCreated {
    /// Give it to `leakscope agent --token`; it works once, within a day. Shown only now.
    pub token: String,
}

/// Make a one-time enrollment token for a new host's agent (audited).
#[utoipa::path(post, path = "/api/v1/agents/enrollments", tag = "hosts", request_body = NewEnrollment,
    responses((status = 201, body = EnrollmentCreated), (status = 400, body = leakscope_model::ApiError),
        (status = 415, body = leakscope_model::ApiError), (status = 422, body = leakscope_model::ApiError)))]
async fn create_enrollment(State(state): State<AppState>, Extension(p): Extension<Principal>, Json(body): Json<NewEnrollment>) -> Result<impl IntoResponse, HttpError> {
    let token = make_enrollment(&state, &p, body.name).await?;
    Ok((StatusCode::CREATED, Json(EnrollmentCreated { token })))
}

/// The engines this server reaches itself (its own and `--docker-host` ones): no agent may
/// take one of their names, or its containers would be taken for theirs.
fn hub_hosts(state: &AppState) -> Vec<String> {
    let mut names = vec![state.engine.host_name()];
    names.extend(lock(&state.hub.direct).iter().map(|(name, _)| name.clone()));
    names
}

async fn make_enrollment(state: &AppState, p: &Principal, name: Option<String>) -> Result<String, HttpError> {
    let (by, for_name, hub_hosts) = (p.name.clone(), name.clone(), hub_hosts(state));
    let access = &state.access;
    let token = access.with(move |s| s.create_enrollment(for_name.as_deref(), Some(&by), &hub_hosts, now_ms())).await?;
    access.audit(&p.name, "created agent enrollment", name.as_deref().unwrap_or("(agent names itself)"), None).await;
    Ok(token)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Enrollment {
    /// The enrollment token an admin made.
    pub token: String,
    /// The agent's stable id for its host.
    pub host_id: String,
    /// The name the agent proposes (the token's own name wins).
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Enrolled {
    pub agent_id: i64,
    pub name: String,
    /// The agent's own credential for `/api/v1/agents/connect`; kept by the agent, only its hash here.
    pub credential: String,
}

/// An agent trades its enrollment token for its credential, once (open to anyone holding a valid token).
#[utoipa::path(post, path = "/api/v1/agents/enroll", tag = "hosts", request_body = Enrollment,
    responses((status = 201, body = Enrolled), (status = 400, description = "the token is unknown, used or expired", body = leakscope_model::ApiError),
        (status = 415, body = leakscope_model::ApiError), (status = 422, body = leakscope_model::ApiError)))]
async fn enroll(State(state): State<AppState>, Json(body): Json<Enrollment>) -> Result<impl IntoResponse, HttpError> {
    let (access, hub_hosts) = (&state.access, hub_hosts(&state));
    let (agent, credential) = access.with(move |s| s.enroll_agent(&body.token, &body.host_id, &body.name, &hub_hosts, now_ms())).await?;
    access.audit(&format!("agent:{}", agent.name), "enrolled agent", &agent.host_id, None).await;
    Ok((StatusCode::CREATED, Json(Enrolled { agent_id: agent.id, name: agent.name, credential })))
}

/// Every agent ever enrolled (revoked ones too), with when it was last heard from.
#[utoipa::path(get, path = "/api/v1/agents", tag = "hosts", responses((status = 200, body = Vec<AgentInfo>)))]
async fn list_agents(State(access): State<SharedAccess>, State(hub): State<Arc<AgentHub>>) -> Result<Json<Vec<AgentInfo>>, HttpError> {
    let mut agents = access.with(|s| s.agents()).await?;
    let connected = lock(&hub.connected);
    for a in &mut agents {
        if let Some(c) = connected.get(&a.id) {
            a.last_seen_ms = Some(c.last_seen_ms);
        }
    }
    Ok(Json(agents))
}

/// Revoke an agent (audited): its credential stops working and its connection closes at once.
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "hosts", params(("id" = i64, Path, description = "agent id")),
    responses((status = 204, description = "revoked"), (status = 400, body = leakscope_model::ApiError), (status = 404, body = leakscope_model::ApiError)))]
async fn revoke_agent(
    State(access): State<SharedAccess>,
    State(hub): State<Arc<AgentHub>>,
    State(engine): State<leakscope_engine::Engine>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<StatusCode, HttpError> {
    let name = access.with(|s| s.agents()).await?.into_iter().find(|a| a.id == id).map(|a| a.name);
    if !access.with(move |s| s.revoke_agent(id, now_ms())).await? {
        return Err(HttpError(StatusCode::NOT_FOUND, format!("no active agent {id}")));
    }
    hub.revoke(id);
    if let Some(name) = name {
        engine.remove_remote_host(&name);
    }
    access.audit(&p.name, "revoked agent", &id.to_string(), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The agent's websocket (`Authorization: Bearer <agent credential>`): JSON hello and heartbeats up; closed with reason `revoked` when revoked.
#[utoipa::path(get, path = "/api/v1/agents/connect", tag = "hosts",
    responses((status = 101, description = "switching to the agent's websocket"), (status = 400, description = "not a websocket request", body = leakscope_model::ApiError)))]
async fn connect(
    State(access): State<SharedAccess>,
    State(engine): State<leakscope_engine::Engine>,
    State(hub): State<Arc<AgentHub>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, HttpError> {
    let credential = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    let agent = if credential.starts_with("lsa_") { access.with(move |s| s.agent(&credential)).await? } else { None };
    let Some(agent) = agent else {
        return Err(HttpError(StatusCode::UNAUTHORIZED, "unknown or revoked agent credential: enroll this agent again with a new token".into()));
    };
    let upgrade = upgrade.map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("this route takes an agent's websocket: {e}")))?;
    Ok(upgrade.on_upgrade(move |socket| serve_agent(socket, agent, hub, access, engine)))
}

async fn serve_agent(mut socket: WebSocket, agent: leakscope_access::AgentPrincipal, hub: Arc<AgentHub>, access: SharedAccess, engine: leakscope_engine::Engine) {
    let (close_tx, mut close_rx) = watch::channel(Closing::No);
    let (outbox, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<HubMessage>();
    let serial = hub.serials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let connected = Connected { serial, last_seen_ms: now_ms(), engine: AgentEngine::default(), close: close_tx, name: agent.name.clone(), outbox };
    // A second connection of the same agent replaces the first (its old socket is closed).
    if let Some(old) = lock(&hub.connected).insert(agent.id, connected) {
        let _ = old.close.send(Closing::Replaced);
    }
    tracing::info!(agent = %agent.name, host_id = %agent.host_id, "agent connected");
    let mut last_stored = 0i64;
    // Pings let the agent notice a dead link (it answers with pongs, which count as hearing from it).
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut heard = std::time::Instant::now();
    let reason = loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    break "silent for 30 s";
                }
                if send_within(&mut socket, Message::Ping(Default::default())).await.is_err() {
                    break "the socket failed";
                }
            }
            changed = close_rx.changed() => {
                let closing = *close_rx.borrow();
                if changed.is_err() || closing != Closing::No {
                    let reason = if closing == Closing::Revoked { REVOKED } else { "replaced by a newer connection" };
                    let _ = send_within(&mut socket, Message::Close(Some(CloseFrame { code: 4001, reason: reason.into() }))).await;
                    break reason;
                }
            }
            Some(message) = outgoing.recv() => {
                let text = serde_json::to_string(&message).unwrap_or_default();
                if send_within(&mut socket, Message::Text(text.into())).await.is_err() {
                    break "the socket failed";
                }
            }
            message = socket.recv() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break "closed by the agent",
                Some(Ok(frame @ (Message::Binary(_) | Message::Text(_)))) => {
                    heard = std::time::Instant::now();
                    let now = now_ms();
                    let message = match frame {
                        Message::Binary(frame) => match crate::agent_link::unpack_heartbeat(&frame) {
                            None => {
                                hub.on_chunk(&frame);
                                continue;
                            }
                            Some(heartbeat) => heartbeat,
                        },
                        Message::Text(text) => serde_json::from_str::<AgentMessage>(&text).map_err(|e| e.to_string()),
                        _ => continue,
                    };
                    let said = match message {
                        Ok(AgentMessage::Hello { engine: state, .. }) => Ok((state, None)),
                        Ok(AgentMessage::Heartbeat { engine: state, containers }) => Ok((state, Some(containers))),
                        Ok(AgentMessage::Response { id, status, headers }) => {
                            hub.on_response(id, status, headers);
                            continue;
                        }
                        Ok(AgentMessage::End { id, error }) => {
                            hub.on_end(id, error);
                            continue;
                        }
                        Ok(AgentMessage::OomKill { kill }) => {
                            // The agent speaks for its own host only.
                            let received = HubMessage::OomKillReceived { kill: kill.clone() };
                            let kill = leakscope_model::alerts::OomKill { host: agent.name.clone(), ..kill };
                            if hub.first_report(&kill) {
                                engine.announce_oom_kill(kill);
                            }
                            let text = serde_json::to_string(&received).unwrap_or_default();
                            if send_within(&mut socket, Message::Text(text.into())).await.is_err() {
                                break "the socket failed";
                            }
                            continue;
                        }
                        Err(e) => Err(e),
                    };
                    match said {
                        Ok((state, containers)) => {
                            engine.set_remote_host(&agent.name, containers, state.connected);
                            if let Some(c) = lock(&hub.connected).get_mut(&agent.id) {
                                c.last_seen_ms = now;
                                c.engine = state;
                            }
                        }
                        Err(e) => tracing::warn!(agent = %agent.name, error = %e, "an agent message was not understood"),
                    }
                    // The database hears of it once a minute: enough for "last seen" after a hub restart.
                    if now - last_stored >= 60_000 {
                        last_stored = now;
                        let id = agent.id;
                        if let Err(e) = access.with(move |s| s.agent_seen(id, now)).await {
                            tracing::warn!(error = %e, "could not store when an agent was seen");
                        }
                    }
                }
                Some(Ok(_)) => heard = std::time::Instant::now(),
            }
        }
    };
    // Only if it is still ours (a newer connection of the same agent may have replaced it).
    let gone = {
        let mut connected = lock(&hub.connected);
        match connected.get(&agent.id) {
            Some(c) if c.serial == serial => connected.remove(&agent.id),
            _ => None,
        }
    };
    hub.drop_calls_of(serial);
    if *close_rx.borrow() == Closing::Revoked {
        engine.remove_remote_host(&agent.name);
    } else if gone.is_some() {
        // Its containers stay listed, marked stale, until it is back.
        engine.set_remote_host(&agent.name, None, false);
    }
    if let Some(c) = gone {
        let (id, last) = (agent.id, c.last_seen_ms);
        let _ = access.with(move |s| s.agent_seen(id, last)).await;
    }
    tracing::info!(agent = %agent.name, reason, "agent disconnected");
}

async fn create_enrollment_form(State(state): State<AppState>, Extension(p): Extension<Principal>, Form(body): Form<NewEnrollment>) -> Response {
    match make_enrollment(&state, &p, body.name.filter(|n| !n.trim().is_empty())).await {
        Ok(token) => {
            state.access.put_flash(&p.name, token);
            axum::response::Redirect::to("/admin").into_response()
        }
        Err(e) => admin_back(Err(e)),
    }
}

async fn revoke_form(access: State<SharedAccess>, hub: State<Arc<AgentHub>>, engine: State<leakscope_engine::Engine>, p: Extension<Principal>, id: Path<i64>) -> Response {
    admin_back(revoke_agent(access, hub, engine, p, id).await.map(|_| ()))
}
