//! Team access over HTTP: the guard every request passes (who is asking,
//! may they, CSRF for cookie sessions), sign-in, first-run setup, sign-out,
//! and the admin API. The decisions live in `leakscope-access`; this file
//! only moves them onto requests and responses.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Extension, Form, Json, Router};
use leakscope_access::{required_access, same_secret, Access, Principal, Role};
use leakscope_engine::now_ms;
use leakscope_access::{AuditEntry, TokenInfo, UserInfo};
use leakscope_model::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::query::{encode, url_pairs};
use crate::web::{admin_back, AppState, HttpError, SharedAccess};

pub const SESSION_COOKIE: &str = "leakscope_session";

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

fn query_param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    url_pairs(uri.query().unwrap_or("")).find(|(k, _)| k == name).map(|(_, v)| v)
}


fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// A local path to return to after sign-in (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n.to_string(),
        _ => "/".into(),
    }
}

fn unauthenticated(method: &Method, path_and_query: &str, path: &str) -> Response {
    // Scrapers get a 401 they can report, not a sign-in page.
    let browser_page = method == Method::GET && !is_api(path) && !path.ends_with(".svg") && !path.ends_with(".png") && path != "/metrics";
    if browser_page {
        return Redirect::to(&format!("/login?next={}", encode(path_and_query))).into_response();
    }
    let mut response =
        HttpError(StatusCode::UNAUTHORIZED, "sign in, or send an API token as `Authorization: Bearer <token>`".into()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"leakscope\""));
    response
}

/// For handlers (`Principal`) and for the pages (`Me`, the wire type).
fn insert_principal(request: &mut Request, p: Principal) {
    let me = leakscope_model::Me { name: p.name.clone(), role: p.role.to_string(), csrf: p.csrf.clone() };
    request.extensions_mut().insert(me);
    request.extensions_mut().insert(p);
}

/// Every request passes here: identify, authorise, check CSRF for cookie sessions.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let nonce = leakscope_access::new_secret("").map(|s| s[..32].to_string()).unwrap_or_default();
    request.extensions_mut().insert(leakscope_model::CspNonce(nonce.clone()));
    let mut response = authorise(state.access.clone(), state.engine.host_name(), request, next).await;
    let headers = response.headers_mut();
    // Scripts: our bundle and the one inline hydration script that carries the nonce.
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `local_host`: the hub's own host, which requests naming no other host act on.
async fn authorise(access: SharedAccess, local_host: String, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let path_and_query = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let token = bearer(request.headers()).map(str::to_string);
    let cookie = cookie_value(request.headers(), SESSION_COOKIE).map(str::to_string);
    let via_cookie = token.is_none() && cookie.is_some();
    let principal = match (token.clone(), cookie) {
        (Some(secret), _) => access.with(move |s| s.token(&secret)).await,
        (None, Some(session)) => access.with(move |s| s.session(&session, now_ms())).await,
        (None, None) => Ok(None),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(e) => return HttpError::from(e).into_response(),
    };
    // A role limited to hosts holds on those hosts only: elsewhere the
    // principal is a viewer, for this request and for what it forwards.
    let host = leakscope_access::host_of_request(&path, request.uri().query()).unwrap_or(local_host);
    let mut limited = None;
    let principal = principal.map(|mut p| {
        let on_host = p.role_on(&host);
        if on_host != p.role {
            limited = Some((p.role, p.hosts.clone().unwrap_or_default()));
            p.role = on_host;
        }
        p
    });
    match (required_access(method.as_str(), &path), principal) {
        (Access::Public, principal) => {
            if let Some(p) = principal {
                insert_principal(&mut request, p);
            }
        }
        (Access::Needs(_), None) => {
            // A wrong token is an error even on a page: scripts should hear it.
            if token.is_some() {
                return HttpError(StatusCode::UNAUTHORIZED, "that API token is unknown or revoked".into()).into_response();
            }
            return unauthenticated(&method, &path_and_query, &path);
        }
        (Access::Needs(role), Some(p)) if p.role < role => {
            let why = match limited {
                Some((full, hosts)) if full >= role => {
                    format!("this needs the {role} role on host {host}; {} is a {full} only on hosts {hosts} (a viewer elsewhere)", p.name)
                }
                _ => format!("this needs the {role} role; {} is a {}", p.name, p.role),
            };
            return HttpError(StatusCode::FORBIDDEN, why).into_response();
        }
        (Access::Needs(_), Some(p)) => {
            let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
            if via_cookie && changes_state {
                let sent = request
                    .headers()
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| query_param(request.uri(), "csrf"));
                let expected = p.csrf.as_deref().unwrap_or("");
                if !sent.is_some_and(|s| same_secret(&s, expected)) {
                    return HttpError(
                        StatusCode::FORBIDDEN,
                        "missing or wrong CSRF token: reload the page and try again".into(),
                    )
                    .into_response();
                }
            }
            insert_principal(&mut request, p);
        }
    }
    next.run(request).await
}

/// The documented routes (see `openapi.rs`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(delete_user))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(audit_log))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        // The pages themselves (sign-in, setup, admin) are the Leptos app's; these take their forms.
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/setup/{secret}", post(setup))
        .route("/admin/users", post(admin_create_user))
        .route("/admin/users/{id}/delete", post(admin_delete_user))
        .route("/admin/tokens", post(admin_create_token))
        .route("/admin/tokens/{id}/revoke", post(admin_revoke_token))
}

fn secure(access: &leakscope_access::AccessState, headers: &HeaderMap) -> bool {
    access.secure_cookies || headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
}

fn session_cookie(value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    // Lax, not Strict: a report link opened from chat must arrive signed in.
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(access): State<SharedAccess>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let keys = [format!("addr:{}", client.ip()), format!("user:{}", form.name.trim().to_lowercase())];
    let next = safe_next(form.next.as_deref());
    let back = |message: &str| Redirect::to(&format!("/login?error={}&next={}", encode(message), encode(&next))).into_response();
    if let Some(wait) = keys.iter().find_map(|k| access.throttle.check(k).err()) {
        let mut response = HttpError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed sign-ins; try again in {} s", wait.as_secs() + 1),
        )
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs() + 1));
        return response;
    }
    let (name, password) = (form.name.clone(), form.password.clone());
    let user = match access.with(move |s| s.verify_password(&name, &password)).await {
        Ok(u) => u,
        Err(e) => return HttpError::from(e).into_response(),
    };
    let Some(user) = user else {
        keys.iter().for_each(|k| access.throttle.failed(k));
        return back("Wrong user name or password.");
    };
    keys.iter().for_each(|k| access.throttle.succeeded(k));
    start_session(&access, &headers, user.id, &user.name, "signed in", &next).await
}

async fn start_session(access: &SharedAccess, headers: &HeaderMap, user_id: i64, name: &str, action: &str, next: &str) -> Response {
    let session = match access.with(move |s| s.create_session(user_id, now_ms())).await {
        Ok(s) => s,
        Err(e) => return HttpError::from(e).into_response(),
    };
    access.audit(name, action, name, None).await;
    let mut response = Redirect::to(next).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&session.token, (session.expires_ms - now_ms()) / 1000, secure(access, headers)));
    response
}

async fn logout(State(access): State<SharedAccess>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE).map(str::to_string) {
        let _ = access.with(move |s| s.end_session(&token)).await;
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, secure(&access, &headers)));
    response
}

#[derive(Deserialize)]
struct SetupForm {
    name: String,
    password: String,
}

async fn setup(State(access): State<SharedAccess>, Path(secret): Path<String>, headers: HeaderMap, Form(form): Form<SetupForm>) -> Response {
    // Taken out under the lock: two visitors cannot both become admin.
    let claimed = access.claim_setup(&secret);
    let Some(claimed) = claimed else {
        return HttpError(StatusCode::NOT_FOUND, "this setup link is used up or wrong".into()).into_response();
    };
    let (name, password) = (form.name.clone(), form.password.clone());
    match access.with(move |s| s.create_user(&name, &password, Role::Admin, now_ms())).await {
        Ok(user) => start_session(&access, &headers, user.id, &user.name, "created the first admin", "/").await,
        Err(e) => {
            access.return_setup(claimed.clone());
            Redirect::to(&format!("/setup/{claimed}?error={}", encode(&e.to_string()))).into_response()
        }
    }
}

// ---- API ----

/// Who this request is: name, role, and for browser sessions the CSRF token.
#[utoipa::path(get, path = "/api/v1/me", tag = "access", responses((status = 200, body = Principal)))]
async fn me(Extension(p): Extension<Principal>) -> Json<Principal> {
    Json(p)
}

/// Every account.
#[utoipa::path(get, path = "/api/v1/users", tag = "access", responses((status = 200, body = Vec<UserInfo>)))]
async fn list_users(State(access): State<SharedAccess>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(access.with(|s| s.users()).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewUser {
    name: String,
    /// At least 10 characters.
    password: String,
    role: Role,
    /// Host patterns (`payments-*,db1`) the role is limited to; a viewer elsewhere. Absent or empty: every host.
    #[serde(default)]
    hosts: Option<String>,
}

/// Create an account (audited).
#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = NewUser,
    responses((status = 201, body = UserInfo), (status = 400, description = "name taken, or password too short", body = ApiError),
        (status = 415, body = ApiError), (status = 422, body = ApiError)))]
async fn create_user(
    State(access): State<SharedAccess>,
    Extension(p): Extension<Principal>,
    Json(body): Json<NewUser>,
) -> Result<impl IntoResponse, HttpError> {
    let user = add_user(&access, &p, body).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn add_user(access: &SharedAccess, p: &Principal, body: NewUser) -> Result<leakscope_access::UserInfo, HttpError> {
    let user = access
        .with(move |s| {
            // Checked before the account exists, so a bad pattern creates nothing.
            leakscope_access::normalise_hosts(body.hosts.as_deref())?;
            let mut user = s.create_user(&body.name, &body.password, body.role, now_ms())?;
            user.hosts = s.limit_user_to_hosts(user.id, body.hosts.as_deref())?;
            Ok(user)
        })
        .await?;
    access.audit(&p.name, "created user", &user.name, Some(role_detail(user.role, user.hosts.as_deref()))).await;
    Ok(user)
}

/// Delete an account and end its sessions (audited).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "access", params(("id" = i64, Path, description = "user id")),
    responses((status = 204, description = "deleted"), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn delete_user(
    State(access): State<SharedAccess>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, HttpError> {
    if !access.with(move |s| s.delete_user(id)).await? {
        return Err(HttpError(StatusCode::NOT_FOUND, format!("no user {id}")));
    }
    access.audit(&p.name, "deleted user", &id.to_string(), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Every API token, revoked ones too (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", responses((status = 200, body = Vec<TokenInfo>)))]
async fn list_tokens(State(access): State<SharedAccess>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(access.with(|s| s.tokens()).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewToken {
    name: String,
    role: Role,
    /// Host patterns (`payments-*,db1`) the role is limited to; a viewer elsewhere. Absent or empty: every host.
    #[serde(default)]
    hosts: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TokenCreated {
    id: i64,
    name: String,
    role: Role,
    /// The secret: shown this once, stored only as a hash.
    token: String,
}

/// Create an API token (audited); its secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = NewToken,
    responses((status = 201, body = TokenCreated), (status = 400, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)))]
async fn create_token(
    State(access): State<SharedAccess>,
    Extension(p): Extension<Principal>,
    Json(body): Json<NewToken>,
) -> Result<impl IntoResponse, HttpError> {
    let (info, secret) = add_token(&access, &p, body).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { id: info.id, name: info.name, role: info.role, token: secret })))
}

async fn add_token(access: &SharedAccess, p: &Principal, body: NewToken) -> Result<(leakscope_access::TokenInfo, String), HttpError> {
    let by = p.name.clone();
    let (info, secret) = access
        .with(move |s| {
            leakscope_access::normalise_hosts(body.hosts.as_deref())?;
            let (mut info, secret) = s.create_token(&body.name, body.role, Some(&by), now_ms())?;
            info.hosts = s.limit_token_to_hosts(info.id, body.hosts.as_deref())?;
            Ok((info, secret))
        })
        .await?;
    access.audit(&p.name, "created token", &info.name, Some(role_detail(info.role, info.hosts.as_deref()))).await;
    Ok((info, secret))
}

/// `role operator`, or `role operator on hosts payments-*` for the audit log.
pub fn role_detail(role: Role, hosts: Option<&str>) -> String {
    match hosts {
        Some(h) => format!("role {role} on hosts {h}"),
        None => format!("role {role}"),
    }
}

/// Revoke an API token (audited); it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = i64, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn revoke_token(
    State(access): State<SharedAccess>,
    Extension(p): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, HttpError> {
    if !access.with(move |s| s.revoke_token(id, now_ms())).await? {
        return Err(HttpError(StatusCode::NOT_FOUND, format!("no active token {id}")));
    }
    access.audit(&p.name, "revoked token", &id.to_string(), None).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Newest entries to return (default 200, at most 5000).
    limit: Option<u32>,
}

/// Who did what: sign-ins, captures, downloads, deletions, shares, account changes.
#[utoipa::path(get, path = "/api/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = ApiError)))]
async fn audit_log(State(access): State<SharedAccess>, State(engine): State<leakscope_engine::Engine>, Query(q): Query<AuditQuery>) -> Result<impl IntoResponse, HttpError> {
    let limit = q.limit.unwrap_or(200).min(5000);
    let mut entries = access.with(move |s| s.audit_log(limit)).await?;
    let own = engine.host_name();
    for entry in &mut entries {
        entry.host.get_or_insert_with(|| own.clone());
    }
    Ok(Json(entries))
}

// ---- the admin page (server-rendered forms; every POST carries the CSRF token) ----


async fn admin_create_user(State(access): State<SharedAccess>, Extension(p): Extension<Principal>, Form(body): Form<NewUser>) -> Response {
    admin_back(add_user(&access, &p, body).await.map(|_| ()))
}

async fn admin_delete_user(State(access): State<SharedAccess>, Extension(p): Extension<Principal>, Path(id): Path<i64>) -> Response {
    admin_back(delete_user(State(access), Extension(p), Path(id)).await.map(|_| ()))
}

/// The new token goes to this admin's next page view (the admin page the
/// redirect opens), once: never into a URL, where history and logs keep it.
async fn admin_create_token(State(access): State<SharedAccess>, Extension(p): Extension<Principal>, Form(body): Form<NewToken>) -> Response {
    match add_token(&access, &p, body).await {
        Ok((_, secret)) => {
            access.put_flash(&p.name, secret);
            Redirect::to("/admin").into_response()
        }
        Err(e) => admin_back(Err(e)),
    }
}

async fn admin_revoke_token(State(access): State<SharedAccess>, Extension(p): Extension<Principal>, Path(id): Path<i64>) -> Response {
    admin_back(revoke_token(State(access), Extension(p), Path(id)).await.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::query::decode;

    #[test]
    fn cookies_queries_and_next() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; leakscope_session=abc; b=2"));
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("abc"));
        let uri: axum::http::Uri = "/x?y=1&csrf=a%2Bb+c".parse().unwrap();
        assert_eq!(query_param(&uri, "csrf").as_deref(), Some("a+b c"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("50%"), Some("50%".into()));
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/containers/web?range=1h")), "/containers/web?range=1h");
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
