//! `leakscope serve`: wires the engine into the Leptos app and the JSON API.

use std::path::PathBuf;

use axum::http::{header, HeaderValue};
use axum::Router;
use leakscope_app::{shell, App};
use leakscope_engine::{Engine, EngineConfig};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::web::{AccessState, AppState};
use crate::ServeArgs;

/// The site directory: explicit, else `../site` next to the binary (the
/// layout `./dev build` produces under `target/`), else `target/site`.
pub fn site_root(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir;
    }
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(|d| d.parent()).map(|d| d.join("site")));
    match beside_binary {
        Some(dir) if dir.join("pkg").is_dir() => dir,
        _ => PathBuf::from("target/site"),
    }
}

/// Points the engine at our capture helper (explicit, else `capture/` beside
/// the site root — beside it, not in it: the site root is served over HTTP)
/// and its Java twin beside it. Err(path) when the helper is not there.
pub fn use_capture_helpers(config: &mut EngineConfig, explicit: Option<PathBuf>, site: &std::path::Path) -> Result<(), PathBuf> {
    let agent = explicit.unwrap_or_else(|| site.parent().unwrap_or(std::path::Path::new(".")).join("capture").join("leakscope-agent"));
    // The twin for containers whose /tmp is noexec.
    config.attach_jar_path = Some(agent.with_file_name("leakscope-attach.jar"));
    config.agent_path = Some(agent.clone());
    if agent.is_file() { Ok(()) } else { Err(agent) }
}

/// The certificate directory `--docker-cert-path [NAME=]DIR` gives the engine named `name`
/// (a named one first, then an unnamed one), for `tcp://` addresses only.
pub fn cert_path_for(values: &[String], name: Option<&str>, address: &str) -> Option<std::path::PathBuf> {
    if !address.starts_with("tcp://") && !address.starts_with("https://") {
        return None;
    }
    let split: Vec<(Option<String>, String)> = values.iter().map(|v| leakscope_engine::docker::split_named_address(v)).collect();
    let named = split.iter().find(|(n, _)| n.is_some() && n.as_deref() == name);
    named.or_else(|| split.iter().find(|(n, _)| n.is_none())).map(|(_, dir)| std::path::PathBuf::from(dir))
}

/// Refuses a `--docker-cert-path NAME=DIR` that no `--docker-host NAME=tcp://…` would use, which
/// would otherwise be silently ignored and leave that engine reached without the TLS meant for it.
pub fn check_cert_paths(hosts: &[String], cert_paths: &[String]) -> Result<(), String> {
    let hosts: Vec<(Option<String>, String)> = hosts.iter().map(|h| leakscope_engine::docker::split_named_address(h)).collect();
    for value in cert_paths {
        let (Some(name), _) = leakscope_engine::docker::split_named_address(value) else { continue };
        match hosts.iter().find(|(n, _)| n.as_deref() == Some(name.as_str())) {
            None => return Err(format!("--docker-cert-path {value}: no --docker-host is named {name} (give it as --docker-host {name}=tcp://…)")),
            Some((_, address)) if !address.starts_with("tcp://") && !address.starts_with("https://") => {
                return Err(format!("--docker-cert-path {value}: {name} is {address}; certificates are for tcp:// engines only"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    check_cert_paths(&args.docker_host, &args.docker_cert_path)?;
    let mut config = EngineConfig::new(&args.data_dir);
    if let Some(value) = args.docker_host.first() {
        let (name, address) = leakscope_engine::docker::split_named_address(value);
        config.docker_cert_path = cert_path_for(&args.docker_cert_path, name.as_deref(), &address);
        config.host_name = name;
        config.docker_host = Some(address);
    }
    config.sample_interval = args.interval;
    config.raw_retention = args.raw_retention;
    config.rollup_retention = args.rollup_retention;
    config.hourly_retention = args.hourly_retention;
    config.stats_source = args.stats_source;
    config.cgroup_root = args.cgroup_root.clone();
    config.detect.min_age_seconds = args.leak_min_age.as_secs_f64();
    config.auto_capture = leakscope_engine::AutoCaptureConfig { policy: args.auto_capture, spacing: args.auto_capture_spacing };
    config.python_walk_timeout = args.python_walk_timeout;
    let site = site_root(args.site_root.clone());
    if let Err(missing) = use_capture_helpers(&mut config, args.agent.clone(), &site) {
        tracing::warn!(agent = %missing.display(), "capture helper not found: captures from images without jcmd will fail; build it with `./dev build`");
    }
    config.dump_store = args.dump_store.clone();
    // Engines reached directly keep their tables in their own folders' files.
    let direct_config = config.clone();
    config.database = args.database.clone();
    let engine = Engine::start(config).map_err(|e| e.to_string())?;
    // A store that does not answer is said at once, but does not keep the
    // dashboard from starting: memory is watched while the store is fixed.
    match engine.probe_dump_store().await {
        Ok(()) => tracing::info!(store = %engine.dump_store(), "heap dumps are stored in"),
        Err(e) => tracing::error!(error = %e, "the dump store does not answer; captures and uploads fail until it does"),
    }
    crate::memory::spawn_trimmer();
    let hub: std::sync::Arc<crate::agent_link::AgentHub> = Default::default();
    let further = &args.docker_host[args.docker_host.len().min(1)..];
    crate::direct_hosts::start(&hub, &engine, further, &args.docker_cert_path, &direct_config, &args.data_dir, &site).await?;

    if !site.join("pkg").join("leakscope.js").is_file() {
        tracing::warn!(site = %site.display(), "UI bundle not found: pages render but do not hydrate; build it with `./dev build`");
    }
    let leptos_options = LeptosOptions::builder()
        .output_name("leakscope")
        .site_root(site.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(args.bind)
        .build();
    let access = AccessState::open(&args.data_dir, args.database.as_deref(), args.secure_cookies).map_err(|e| e.to_string())?;
    if let Some(path) = access.setup_path() {
        // On the console only: whoever can read it may become the first admin.
        println!("No admin account yet. Create it by opening this one-time link: http://{}{path}", args.bind);
    }
    let notifier = open_notifier(&args, &engine, &access)?;
    let app = router(AppState { leptos_options, engine: engine.clone(), access, notifier, hub }, Door::Users);

    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    tracing::info!(
        "Leakscope listening on http://{} (data in {})",
        args.bind,
        args.data_dir.display()
    );
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"));
    // A standby sharing the database takes the background work over now, not when the lease runs out.
    engine.release_background().await;
    served
}

/// Notifications follow the engine from the start; their audit entries go
/// through the access store like every other.
fn open_notifier(args: &ServeArgs, engine: &Engine, access: &leakscope_access::SharedAccess) -> Result<std::sync::Arc<leakscope_notify::Notifier>, String> {
    let config = leakscope_notify::NotifierConfig {
        public_url: args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.bind)).trim_end_matches('/').to_string(),
        rules: leakscope_notify::Rules { limit_share: args.alert_limit_share, repeat_ms: args.alert_repeat.as_millis() as i64 },
        per_minute: 20,
    };
    let audit_access = access.clone();
    let audit: leakscope_notify::AuditSink = std::sync::Arc::new(move |actor: &str, action: &str, target: &str, detail: &str| {
        let (access, actor, action, target) = (audit_access.clone(), actor.to_string(), action.to_string(), target.to_string());
        let detail = (!detail.is_empty()).then(|| detail.to_string());
        tokio::spawn(async move { access.audit(&actor, &action, &target, detail).await });
    });
    let notifier = leakscope_notify::Notifier::open(&args.data_dir.join("leakscope.db"), args.database.as_deref(), config, audit).map_err(|e| e.to_string())?;
    let engine_for_gate = engine.clone();
    notifier.spawn(engine.subscribe(), engine.subscribe_oom_kills(), std::sync::Arc::new(move || engine_for_gate.holds_background()));
    Ok(notifier)
}

/// Who comes through the app's door.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Users and API tokens, signed in by the guard; requests for agents' hosts are forwarded.
    Users,
    /// Only the hub, through an agent's own websocket (no port is opened): it signed the
    /// user in and checked their role already, and the request carries who they are.
    Hub,
}

pub fn router(state: AppState, door: Door) -> Router {
    let routes = generate_route_list(App);
    let remote_hosts: std::sync::Arc<dyn leakscope_app::server_fns::RemoteHosts> =
        std::sync::Arc::new(crate::tunnel::HubHosts { hub: state.hub.clone(), engine: state.engine.clone() });
    let engine = state.engine.clone();
    let access = state.access.clone();
    let notifier = state.notifier.clone();
    let options = state.leptos_options.clone();
    let pkg_dir = PathBuf::from(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let (documented, doc) = crate::openapi::api();
    let reference = std::sync::Arc::new(crate::openapi::reference(&doc));
    let app = Router::new()
        .nest_service("/pkg", ServeDir::new(pkg_dir).precompressed_gzip())
        .merge(documented)
        .merge(crate::api::routes())
        .merge(crate::charts::routes())
        .merge(crate::dumps_api::routes())
        .merge(crate::capture_api::routes())
        .merge(crate::auth::routes())
        .merge(crate::reports_api::routes())
        .merge(crate::alerts_api::routes())
        .merge(crate::metrics_api::routes())
        .merge(crate::hub::routes())
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(engine.clone());
                provide_context(access.clone());
                provide_context(notifier.clone());
                provide_context(reference.clone());
                provide_context(remote_hosts.clone());
                provide_context(leakscope_app::server_fns::HostAnswers::default());
            },
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell));
    let app = match door {
        // The forwarding sits inside the guard: the hub decides who may do what on every host.
        Door::Users => app
            .layer(axum::middleware::from_fn_with_state(state.clone(), crate::tunnel::forward_to_agents))
            .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::guard)),
        Door::Hub => app,
    };
    app
        // Inside compression: it rewrites plain bodies, never encoded ones.
        .layer(axum::middleware::from_fn(crate::web::api_errors::json_errors))
        .layer(CompressionLayer::new().no_br().no_zstd())
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Outermost: whatever panics inside (guard, handlers, page renders) still gets an answer.
        .layer(axum::middleware::from_fn(crate::web::panics::catch_panics))
        .with_state(state)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::check_cert_paths;

    #[test]
    fn a_certificate_directory_must_name_a_tcp_engine_that_is_given() {
        let hosts = ["unix:///var/run/docker.sock".to_string(), "db-1=tcp://10.0.0.7:2376".to_string(), "edge=ssh://me@edge".to_string()];
        let ok = |certs: &[&str]| check_cert_paths(&hosts, &certs.iter().map(|c| c.to_string()).collect::<Vec<_>>());
        assert!(ok(&["db-1=/etc/leakscope/db-1", "/etc/leakscope/all"]).is_ok());
        let typo = ok(&["db1=/etc/leakscope/db-1"]).unwrap_err();
        assert!(typo.contains("no --docker-host is named db1"), "{typo}");
        let not_tcp = ok(&["edge=/etc/leakscope/edge"]).unwrap_err();
        assert!(not_tcp.contains("tcp:// engines only"), "{not_tcp}");
    }
}
