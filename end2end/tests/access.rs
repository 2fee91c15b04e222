//! Team access against the real server: every API route refuses anonymous
//! callers (the list is the OpenAPI document's, from which the router is
//! built, so a new route cannot be forgotten), roles are enforced, cookie sessions need
//! the CSRF token, the first-run setup link works once, sign-in is throttled,
//! and the audit log records who did what.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use end2end::{answer, create_token, create_user, Server};

/// (method, path) of every route under /api/v1, from the OpenAPI document,
/// which the router is built from (see `server/src/openapi.rs`), plus the
/// JSON 404 for unknown API paths.
fn api_routes(server: &Server) -> BTreeSet<(String, String)> {
    let (status, doc) = server.get_json("/api/v1/openapi.json");
    assert_eq!(status, 200);
    let mut routes = BTreeSet::from([("GET".to_string(), "/api/v1/anything".to_string())]);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                let concrete = path.split('/').map(|s| if s.starts_with('{') { "0" } else { s }).collect::<Vec<_>>().join("/");
                routes.insert((method.to_uppercase(), concrete));
            }
        }
    }
    routes
}

fn call(server: &Server, method: &str, path: &str, auth: Option<&str>, cookie: Option<&str>) -> (u16, String) {
    let mut request = ureq::request(method, &server.url(path));
    if let Some(token) = auth {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    if let Some(cookie) = cookie {
        request = request.set("Cookie", cookie);
    }
    let result = if method == "GET" || method == "DELETE" { request.call() } else { request.send_bytes(b"{}") };
    answer(result, path)
}

#[test]
fn every_api_route_needs_credentials_and_roles_are_enforced() {
    let server = Server::start(&[], &[]);
    let routes = api_routes(&server);
    assert!(routes.len() >= 25, "too few routes found in the source: {routes:?}");
    assert!(routes.contains(&("POST".into(), "/api/v1/containers/0/dumps".into())));
    // Agents enroll with the one-time token in the body (no user or API token exists on
    // their host yet): a made-up one is refused there, and nothing else is open.
    let enroll = ("POST".to_string(), "/api/v1/agents/enroll".to_string());
    assert!(routes.contains(&enroll));
    let (status, body) = answer(
        ureq::post(&server.url(&enroll.1)).set("Content-Type", "application/json").send_string(r#"{"token":"lse_0000","host_id":"h","name":"n"}"#),
        "enroll",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("enrollment token is unknown"), "{body}");
    for (method, path) in routes.iter().filter(|r| **r != enroll) {
        let (status, body) = call(&server, method, path, None, None);
        assert_eq!(status, 401, "{method} {path} answered {status} without credentials: {body}");
        let (status, _) = call(&server, method, path, Some("lsk_0000"), None);
        assert_eq!(status, 401, "{method} {path} accepted a made-up token");
    }
    // A viewer reads, but may not capture, download, delete, upload or administer.
    let viewer = create_token(&server.data_dir, "viewer", "a-viewer");
    assert_eq!(call(&server, "GET", "/api/v1/containers", Some(&viewer), None).0, 200);
    assert_eq!(call(&server, "GET", "/api/v1/dumps", Some(&viewer), None).0, 200);
    for (method, path) in [
        ("POST", "/api/v1/containers/0/dumps"),
        ("GET", "/api/v1/dumps/0/download"),
        ("DELETE", "/api/v1/dumps/0"),
        ("POST", "/api/v1/dumps"),
        ("GET", "/api/v1/tokens"),
        ("GET", "/api/v1/audit"),
        ("GET", "/dumps/0/download"),
    ] {
        let (status, body) = call(&server, method, path, Some(&viewer), None);
        assert_eq!(status, 403, "{method} {path} as a viewer: {status} {body}");
    }
    // Tokens are accepted on pages and chart images too.
    assert_eq!(call(&server, "GET", "/", Some(&viewer), None).0, 200);
    // Pages redirect a signed-out browser to the sign-in page.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let response = agent.get(&server.url("/dumps?service=x")).call().unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.header("location"), Some("/login?next=/dumps%3Fservice%3Dx"));
    // A revoked token stops working at once.
    let (_, tokens) = server.get_json("/api/v1/tokens");
    let id = tokens.as_array().unwrap().iter().find(|t| t["name"] == "a-viewer").unwrap()["id"].as_i64().unwrap();
    assert_eq!(call(&server, "DELETE", &format!("/api/v1/tokens/{id}"), Some(&server.token), None).0, 204);
    assert_eq!(call(&server, "GET", "/api/v1/containers", Some(&viewer), None).0, 401);
    // Security headers on every answer.
    let response = server.request("GET", "/").call().unwrap();
    let csp = response.header("content-security-policy").unwrap_or_default().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("'nonce-"), "{csp}");
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    let page = response.into_string().unwrap();
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(page.matches("<script").count() == page.matches(&format!("nonce=\"{nonce}\"")).count(), "an inline script lacks the nonce");
}

/// Signs in with the form and returns the session cookie (`name=value`).
fn sign_in(server: &Server, user: &str, password: &str) -> Result<String, (u16, String)> {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let response = agent
        .post(&server.url("/login"))
        .send_form(&[("name", user), ("password", password), ("next", "/")])
        .map_err(|e| match e {
            ureq::Error::Status(code, r) => (code, r.into_string().unwrap_or_default()),
            other => (0, other.to_string()),
        })?;
    let cookie = response.header("set-cookie").unwrap_or_default().to_string();
    if !cookie.starts_with("leakscope_session=") {
        return Err((response.status(), response.header("location").unwrap_or_default().to_string()));
    }
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    Ok(cookie.split(';').next().unwrap().to_string())
}

#[test]
fn cookie_sessions_need_the_csrf_token_and_sign_in_is_throttled() {
    let server = Server::start(&[], &[]);
    create_user(&server.data_dir, "olga", "operator-password", "operator");
    let cookie = sign_in(&server, "olga", "operator-password").unwrap();
    let (status, me) = call(&server, "GET", "/api/v1/me", None, Some(&cookie));
    assert_eq!(status, 200, "{me}");
    let me: serde_json::Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["role"], "operator");
    let csrf = me["csrf"].as_str().unwrap().to_string();
    // A state-changing request with only the cookie is refused...
    let (status, body) = call(&server, "POST", "/api/v1/containers/nonexistent/dumps", None, Some(&cookie));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    // ...and passes the guard with the token (then 404: no such container).
    let (status, body) = call(&server, "POST", &format!("/api/v1/containers/nonexistent/dumps?csrf={csrf}"), None, Some(&cookie));
    assert_eq!(status, 404, "{body}");
    // An operator is not an admin.
    assert_eq!(call(&server, "GET", "/api/v1/users", None, Some(&cookie)).0, 403);
    // Sign-out ends the session.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let out = agent.post(&server.url(&format!("/logout?csrf={csrf}"))).set("Cookie", &cookie).call().unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(call(&server, "GET", "/api/v1/me", None, Some(&cookie)).0, 401);

    // Wrong passwords: a pause after five.
    for _ in 0..5 {
        assert!(sign_in(&server, "olga", "not-the-password").is_err());
    }
    let (status, body) = sign_in(&server, "olga", "operator-password").unwrap_err();
    assert_eq!(status, 429, "{body}");

    // The audit log has the sign-in; the CLI-made token and user are in it too.
    let (_, log) = server.get_json("/api/v1/audit");
    let actions: Vec<String> = log.as_array().unwrap().iter().map(|e| format!("{} {}", e["actor"], e["action"])).collect();
    assert!(actions.iter().any(|a| a == "\"olga\" \"signed in\""), "{actions:?}");
    assert!(actions.iter().any(|a| a == "\"console\" \"created token\""), "{actions:?}");
}

#[test]
fn the_first_run_setup_link_creates_the_admin_once() {
    let server = Server::start_without_accounts(&[]);
    let mut link = None;
    server.wait_until(std::time::Duration::from_secs(10), "the setup link on the console", || {
        link = server.log_text().split_whitespace().find(|w| w.contains("/setup/")).map(str::to_string);
        link.is_some()
    });
    let path = format!("/setup/{}", link.unwrap().rsplit("/setup/").next().unwrap());
    let (status, page) = answer(ureq::get(&server.url(&path)).call(), &path);
    assert_eq!(status, 200);
    assert!(page.contains("first admin"), "{page}");
    // The sign-in page tells a lost visitor where the link is.
    let (_, login) = answer(ureq::get(&server.url("/login")).call(), "/login");
    assert!(login.contains("setup link"), "{login}");
    // A wrong secret is a 404.
    assert_eq!(answer(ureq::get(&server.url("/setup/0000")).call(), "/setup").0, 404);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let created = agent.post(&server.url(&path)).send_form(&[("name", "root"), ("password", "a-long-admin-password")]).unwrap();
    assert_eq!(created.status(), 303);
    assert!(created.header("set-cookie").unwrap().starts_with("leakscope_session="));
    // Used up.
    let again = agent.post(&server.url(&path)).send_form(&[("name", "mallory"), ("password", "another-password")]);
    assert!(matches!(again, Err(ureq::Error::Status(404, _))), "the setup link worked twice");
    assert!(sign_in(&server, "root", "a-long-admin-password").is_ok());
}

#[test]
fn the_admin_page_manages_users_and_tokens_with_the_csrf_token() {
    let server = Server::start(&[], &[]);
    let cookie = sign_in(&server, end2end::TEST_USER, end2end::TEST_PASSWORD).unwrap();
    let (_, me) = call(&server, "GET", "/api/v1/me", None, Some(&cookie));
    let csrf = serde_json::from_str::<serde_json::Value>(&me).unwrap()["csrf"].as_str().unwrap().to_string();
    let form = |path: &str, fields: &[(&str, &str)]| {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        answer(agent.post(&server.url(path)).set("Cookie", &cookie).send_form(fields), path)
    };
    // Without the token: refused.
    assert_eq!(form("/admin/tokens", &[("name", "ci"), ("role", "viewer")]).0, 403);
    // With it: the new token is shown once, on the admin page the answer redirects to (never in a URL).
    let (status, _) = form(&format!("/admin/tokens?csrf={csrf}"), &[("name", "ci"), ("role", "viewer")]);
    assert_eq!(status, 303);
    let (status, page) = call(&server, "GET", "/admin", None, Some(&cookie));
    assert_eq!(status, 200, "{page}");
    let token = page.split("id=\"new-token-value\">").nth(1).expect("the new token on the page").split('<').next().unwrap().to_string();
    assert!(token.starts_with("lsk_"), "{token}");
    let (_, again) = call(&server, "GET", "/admin", None, Some(&cookie));
    assert!(!again.contains(&token), "the token is shown once");
    assert_eq!(call(&server, "GET", "/api/v1/containers", Some(&token), None).0, 200);
    // Users: added through the form, listed, and able to sign in with their role.
    let (status, _) = form(&format!("/admin/users?csrf={csrf}"), &[("name", "vic"), ("password", "viewer-password"), ("role", "viewer")]);
    assert_eq!(status, 303);
    let (_, users) = server.get_json("/api/v1/users");
    assert!(users.as_array().unwrap().iter().any(|u| u["name"] == "vic" && u["role"] == "viewer"), "{users}");
    let vic = sign_in(&server, "vic", "viewer-password").unwrap();
    assert_eq!(call(&server, "GET", "/admin", None, Some(&vic)).0, 403);
    let (status, admin) = call(&server, "GET", "/admin", None, Some(&cookie));
    assert_eq!(status, 200);
    assert!(admin.contains("created token") && admin.contains("created user"), "the audit log on the admin page misses entries");
}

/// `leakscope token create --hosts …`: the secret on the last line.
fn host_limited_token(server: &Server, name: &str, hosts: &str) -> String {
    let out = std::process::Command::new(end2end::leakscope_bin())
        .args(["token", "create", "--role", "operator", "--name", name, "--hosts", hosts, "--data-dir", server.data_dir.to_str().unwrap()])
        .args(end2end::database_args(&server.data_dir))
        .output()
        .unwrap();
    assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string()
}

#[test]
fn roles_limited_to_hosts_hold_there_only() {
    let server = Server::start(&[], &[]);
    let (_, hosts) = server.get_json("/api/v1/hosts");
    let here = hosts[0]["name"].as_str().unwrap().to_string();
    // An operator of the payments hosts only, and one of this host.
    let payments = host_limited_token(&server, "payments-ops", "payments-*");
    let local = host_limited_token(&server, "local-ops", &here);
    // Both read everywhere.
    assert_eq!(call(&server, "GET", "/api/v1/containers", Some(&payments), None).0, 200);
    // On this host the payments operator is a viewer: no capture, no download (the guard
    // answers before any container is looked up); this host's operator may (404: no such container).
    for (method, path) in [("POST", "/api/v1/containers/no-such-container/dumps"), ("GET", "/api/v1/dumps/0/download")] {
        let (status, body) = call(&server, method, path, Some(&payments), None);
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(body.contains(&format!("operator role on host {here}")) && body.contains("only on hosts payments-*"), "{body}");
        let (status, body) = call(&server, method, path, Some(&local), None);
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    // On a payments host it is an operator: the request gets past the guard (and that host is not known here).
    let (status, body) = call(&server, "POST", "/api/v1/containers/web/dumps?host=payments-eu1", Some(&payments), None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no host named payments-eu1"), "{body}");
    let (status, body) = call(&server, "POST", "/hosts/db1/containers/web/capture", Some(&payments), None);
    assert_eq!(status, 403, "{body}");
    // What a request may do here is what /me says.
    let me: serde_json::Value = serde_json::from_str(&call(&server, "GET", "/api/v1/me", Some(&payments), None).1).unwrap();
    assert_eq!((me["role"].as_str(), me["hosts"].as_str()), (Some("viewer"), Some("payments-*")), "{me}");
    // The admin API takes the limit too, checks it, and lists it; the audit log says it.
    let (status, body) = answer(
        server.request("POST", "/api/v1/tokens").send_json(serde_json::json!({"name": "bad", "role": "operator", "hosts": "db1; rm"})),
        "tokens",
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = answer(
        server.request("POST", "/api/v1/users").send_json(serde_json::json!({"name": "dana", "password": "dana-password-1", "role": "operator", "hosts": "db*, payments-*"})),
        "users",
    );
    assert_eq!(status, 201);
    let (_, tokens) = server.get_json("/api/v1/tokens");
    assert!(tokens.as_array().unwrap().iter().all(|t| t["name"] != "bad"), "a refused token was made: {tokens}");
    assert!(tokens.as_array().unwrap().iter().any(|t| t["name"] == "payments-ops" && t["hosts"] == "payments-*"), "{tokens}");
    let (_, users) = server.get_json("/api/v1/users");
    assert!(users.as_array().unwrap().iter().any(|u| u["name"] == "dana" && u["hosts"] == "db*,payments-*"), "{users}");
    let (_, audit) = server.get_json("/api/v1/audit");
    assert!(audit.to_string().contains("role operator on hosts payments-*"), "{audit}");
    // A browser session carries the limit as well.
    let cookie = sign_in(&server, "dana", "dana-password-1").unwrap();
    let me: serde_json::Value = serde_json::from_str(&call(&server, "GET", "/api/v1/me", None, Some(&cookie)).1).unwrap();
    assert_eq!(me["role"], "viewer", "{me}");
    let page = server.request("GET", "/admin").call().unwrap().into_string().unwrap();
    assert!(page.contains("operator on db*,payments-* (viewer elsewhere)"), "the admin page does not show the limit");
}

/// `leakscope migrate --database`: a one-machine installation's accounts,
/// tokens and audit log move from the data folder's file into PostgreSQL, and
/// the server started on that database knows the same people and tokens.
#[test]
fn accounts_tokens_the_audit_log_and_reports_migrate_from_the_file_into_postgresql() {
    if end2end::database_for(&std::env::temp_dir().join(end2end::unique_name("probe"))).is_some() {
        // The pass with the access data in PostgreSQL has no file to start from: the first pass covers this.
        return;
    }
    let server = Server::start(&[], &[]);
    create_user(&server.data_dir, "olga", "operator-password", "operator");
    let old_token = server.token.clone();
    // A report of a CI run, shared by its public link.
    let run = r#"{"title":"nightly run","service":"orders","container_name":"orders-1","from":"2026-12-01T10:00:00Z","to":"2026-12-01T10:10:00Z",
        "series":[{"time_ms":1796119500000,"working_set_bytes":1048576,"working_set_min_bytes":1048576,"working_set_max_bytes":1048576,"usage_bytes":1048576,"limit_bytes":null}]}"#;
    let (status, created) = server.post_json("/api/v1/check-reports", run);
    assert_eq!(status, 201, "{created}");
    let report = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_string();
    let (status, shared) = server.post_json(&format!("/api/v1/reports/{report}/share"), "");
    assert_eq!(status, 200, "{shared}");
    let public = serde_json::from_str::<serde_json::Value>(&shared).unwrap()["url"].as_str().unwrap().to_string();
    // A day of memory history of a container, which moves too.
    let watched = end2end::TestContainer::run("migrated-history", &["-m", "32m"], &["sleep", "600"]);
    server.wait_until(Duration::from_secs(30), "the container is sampled", || server.get(&format!("/api/v1/containers/{}", watched.name)).0 == 200);
    end2end::seed_history(&server, &watched.name, 24 * 60);
    let day = |s: &Server| s.get_json(&format!("/api/v1/containers/{}/memory?range=24h&step=300", watched.name)).1["points"].as_array().map(Vec::len).unwrap_or(0);
    let before = day(&server);
    assert!(before >= 250, "{before} points before the move");
    let data = server.stop_keeping_data();
    let url = leakscope_db::test_postgres_url();
    let migrate = || {
        let out = std::process::Command::new(end2end::leakscope_bin())
            .args(["migrate", "--from", data.to_str().unwrap(), "--database", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let said = migrate();
    assert!(said.contains("users: 2 rows") && said.contains("api_tokens: 1 rows") && said.contains("reports: 1 rows"), "{said}");
    assert!(said.contains("samples: ") && said.contains("rollup_1m: ") && said.contains("containers: "), "{said}");
    // A second run adds nothing (and fails nothing).
    assert!(migrate().contains("users: 2 rows copied or already there (2 in the database)"));

    // The server on PostgreSQL: the token made before the move works, olga signs in, the audit log came along.
    std::fs::write(data.join("database-url"), &url).unwrap();
    let moved = Server::start_with_data(data, &[], &[]);
    let me = ureq::get(&moved.url("/api/v1/me")).set("Authorization", &format!("Bearer {old_token}")).call().unwrap().into_string().unwrap();
    assert!(me.contains("token:tests"), "{me}");
    sign_in(&moved, "olga", "operator-password").expect("olga signs in on the moved server");
    let (_, audit) = moved.get_json("/api/v1/audit");
    assert!(audit.to_string().contains("created user"), "{audit}");
    // The report came along, and its public link still opens signed out.
    let (_, reports) = moved.get_json("/api/v1/reports");
    assert_eq!(reports[0]["title"], "nightly run", "{reports}");
    let (status, page) = end2end::answer(ureq::get(&moved.url(&public)).call(), "public link");
    assert!(status == 200 && page.contains("nightly run"), "{status}: {page}");
    // The container's day of history charts the same on the moved server.
    let after = day(&moved);
    assert!(after >= before, "{after} points after the move, {before} before");
    // New rows number after the copied ones (no clash with a copied id).
    create_user(&moved.data_dir, "pia", "viewer-password", "viewer");
    let (_, users) = moved.get_json("/api/v1/users");
    let ids: Vec<i64> = users.as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{users}");
}

/// Two servers on one PostgreSQL: a user signed in on one is signed in on the other; one of
/// them does the background work (automatic captures, notifications) and the other stands
/// by; killed, the holder is replaced within seconds, stopped cleanly at once.
#[test]
fn two_servers_on_one_database_share_sessions_and_hand_the_background_work_over() {
    let url = leakscope_db::test_postgres_url();
    let on_the_database = || {
        let dir = std::env::temp_dir().join(format!("leakscope-test-{}", end2end::unique_name("shared")));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("database-url"), &url).unwrap();
        Server::start_with_data(dir, &[], &[])
    };
    let engine = |server: &Server| server.get_json("/api/v1/engine").1;
    let a = on_the_database();
    a.wait_until(Duration::from_secs(30), "the first server holds the background work", || engine(&a)["holds_background"] == true);
    let holder_a = engine(&a)["background_holder"].as_str().unwrap().to_string();
    let b = on_the_database();
    b.wait_until(Duration::from_secs(30), "the second stands by and names the first", || {
        let status = engine(&b);
        status["holds_background"] == false && status["background_holder"] == holder_a.as_str()
    });
    assert_eq!(engine(&a)["holds_background"], true, "two holders at once");

    create_user(&a.data_dir, "olga", "operator-password", "operator");
    let cookie = sign_in(&a, "olga", "operator-password").unwrap();
    let (status, me) = call(&b, "GET", "/api/v1/me", None, Some(&cookie));
    assert_eq!(status, 200, "signed in on one, signed in on the other: {me}");

    // Behind a load balancer that spreads connections over both: signed in through
    // it, every request answered whichever server it lands on.
    let balancer = end2end::RoundRobin::start(&[&a.base, &b.base]);
    let through = end2end::RoundRobin::agent();
    let signed_in = through
        .post(&format!("{}/login", balancer.base))
        .send_form(&[("name", "olga"), ("password", "operator-password"), ("next", "/")])
        .unwrap();
    let balanced_cookie = signed_in.header("set-cookie").unwrap_or_default().split(';').next().unwrap().to_string();
    assert!(balanced_cookie.starts_with("leakscope_session="), "{balanced_cookie}");
    let me_through = |cookie: &str| through.get(&format!("{}/api/v1/me", balancer.base)).set("Cookie", cookie).call().map(|r| r.status()).unwrap_or_else(|e| match e {
        ureq::Error::Status(code, _) => code,
        _ => 0,
    });
    for _ in 0..8 {
        assert_eq!(me_through(&balanced_cookie), 200);
    }
    assert!(balancer.served().iter().all(|n| *n >= 4), "requests did not reach both servers: {:?}", balancer.served());

    // A capture started through one is followed through the other, and a click there joins it.
    let target = end2end::TestContainer::run("shared-capture", &["-m", "32m"], &["sleep", "600"]);
    let (status, started) = a.post_json(&format!("/api/v1/containers/{}/dumps", target.name), r#"{"kind":"memory-map"}"#);
    assert_eq!(status, 202, "{started}");
    let job = serde_json::from_str::<serde_json::Value>(&started).unwrap()["job_id"].as_str().unwrap().to_string();
    b.wait_until(Duration::from_secs(10), "the job is seen through the other server", || b.get_json(&format!("/api/v1/jobs/{job}")).0 == 200);
    let (status, again) = b.post_json(&format!("/api/v1/containers/{}/dumps", target.name), r#"{"kind":"memory-map"}"#);
    let joined = serde_json::from_str::<serde_json::Value>(&again).unwrap()["job_id"].as_str().unwrap_or_default().to_string();
    let (_, seen) = b.get_json(&format!("/api/v1/jobs/{job}"));
    assert!(status == 202 && (joined == job || seen["state"] != "running"), "a second click through the other server started {joined}, not {job}: {seen}");
    let done = b.wait_job(&job);
    assert_eq!(done["state"], "done", "{done}");
    let (status, dump) = b.get_json(&format!("/api/v1/dumps/{}", done["dump_id"].as_str().unwrap()));
    assert_eq!(status, 200, "the dump's record is shared too: {dump}");
    eprintln!("second click through the other server joined the job: {}", joined == job);
    if joined != job {
        b.wait_job(&joined);
    }

    // Both sample the engine, only the holder writes: one stored sample per tick (1 s here), not two.
    let history = leakscope_engine::store::Store::open(&url).unwrap();
    let raw_times = |name: &str, from_ms: i64| -> Vec<i64> {
        let points = history.series(name, from_ms, leakscope_engine::now_ms() + 1, 1, leakscope_engine::store::SeriesSource::Raw).unwrap();
        points.iter().map(|p| p.time_ms).collect()
    };
    let since = leakscope_engine::now_ms() - 20_000;
    b.wait_until(Duration::from_secs(30), "ten samples of the container", || raw_times(&target.name, since).len() >= 10);
    let times = raw_times(&target.name, since);
    let closest = times.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(closest >= 500, "two samples {closest} ms apart: both servers write: {times:?}");

    // An OOM kill both servers see is notified once: both race to store the event, and
    // the holder sends it whichever of them stored it (the standby sends nothing).
    let receiver = end2end::WebhookReceiver::start();
    a.add_webhook("ops", &receiver.url);
    let oom = end2end::TestContainer::run_image("shared-oom", &end2end::fixture_image("native"), &["-e", "LEAK_KIB_PER_SEC=2048", "-m", "48m", "--memory-swap", "48m"], &[]);
    a.wait_until(Duration::from_secs(120), "the OOM kill is notified", || !receiver.events("oom-kill", &oom.name).is_empty());
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(receiver.events("oom-kill", &oom.name).len(), 1, "one OOM kill, one message, with two servers watching");

    // The holder dies without a word: the standby takes over once the lease runs out.
    let killed = Instant::now();
    let killed_ms = leakscope_engine::now_ms();
    assert!(std::process::Command::new("kill").args(["-9", &a.pid().to_string()]).status().unwrap().success());
    b.wait_until(Duration::from_secs(30), "the standby takes the background work over", || engine(&b)["holds_background"] == true);
    let takeover = killed.elapsed();
    eprintln!("FIGURE background lease takeover after kill -9: {:.1} s", takeover.as_secs_f64());
    assert!(takeover < Duration::from_secs(15), "took {takeover:?}");
    // The history goes on from the new holder, and has no hole for the lease's time to
    // expire: the standby kept what it sampled meanwhile and stores it as it takes over.
    b.wait_until(Duration::from_secs(15), "samples written by the new holder", || raw_times(&target.name, killed_ms + takeover.as_millis() as i64).len() >= 3);
    let times = raw_times(&target.name, killed_ms - 10_000);
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    eprintln!("FIGURE samples missing around the takeover: {:.1} s", gap as f64 / 1000.0);
    assert!(gap < 6_000, "a gap of {gap} ms in the history: {times:?}");
    // The load balancer skips the dead server: still signed in, every request answered.
    for _ in 0..4 {
        assert_eq!(me_through(&balanced_cookie), 200);
    }

    // A clean stop gives it up at once.
    let c = on_the_database();
    c.wait_until(Duration::from_secs(30), "a third server stands by", || engine(&c)["holds_background"] == false && !engine(&c)["background_holder"].is_null());
    let stopped = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &b.pid().to_string()]).status().unwrap().success());
    c.wait_until(Duration::from_secs(30), "the standby takes over from a server that stopped", || engine(&c)["holds_background"] == true);
    let handover = stopped.elapsed();
    eprintln!("FIGURE background lease handover after a clean stop: {:.1} s", handover.as_secs_f64());
    assert!(handover < Duration::from_secs(8), "took {handover:?}");
}
