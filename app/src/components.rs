//! Small pieces shared by pages.

use leakscope_model::{format_bytes, format_duration, format_percent, ContainerInfo, EngineStatus, LeakStatus};
use leptos::prelude::*;

use crate::live::current_overview;
use crate::server_fns::get_overview;

/// A red bar on every page while the engine is unreachable: which address was
/// tried, why it failed, and that Leakscope keeps retrying.
#[component]
pub fn EngineBanner() -> impl IntoView {
    let overview = Resource::new(|| (), |_| get_overview());
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let engine = current_overview(overview.get().and_then(Result::ok)).map(|o| o.engine);
                engine.filter(|e| !e.connected).map(|e| view! { <EngineDown engine=e/> })
            }}
        </Suspense>
    }
}

#[component]
fn EngineDown(engine: EngineStatus) -> impl IntoView {
    view! {
        <div class="banner error" role="alert" id="engine-banner">
            <strong>"Docker engine unreachable. "</strong>
            "Tried " <code>{engine.address}</code> ": "
            {engine.error.unwrap_or_else(|| "not connected".into())}
            ". Leakscope retries every 2 s; charts show the gap. Set DOCKER_HOST to use another engine."
        </div>
    }
}

/// Docker's state word as a coloured badge.
#[component]
pub fn StateBadge(state: String) -> impl IntoView {
    let class = match state.as_str() {
        "running" => "badge ok",
        "restarting" | "paused" => "badge warn",
        "exited" | "dead" | "removed" => "badge muted",
        _ => "badge",
    };
    let label = if state == "exited" { "stopped".to_string() } else { state };
    let data_state = label.clone();
    view! { <span class=class data-state=data_state>{label}</span> }
}

/// The limit, or a visible warning that there is none.
#[component]
pub fn LimitCell(limit: Option<u64>) -> impl IntoView {
    match limit {
        Some(bytes) => view! { <span>{format_bytes(bytes)}</span> }.into_any(),
        None => view! {
            <span class="badge warn no-limit" title="Without a memory limit a leak eats the host's memory before anything stops it">
                "no limit"
            </span>
        }
        .into_any(),
    }
}

/// Working set as a share of the limit, with a bar.
#[component]
pub fn PercentOfLimit(container: ContainerInfo) -> impl IntoView {
    match container.memory.as_ref().and_then(|m| m.limit_fraction()) {
        Some(fraction) => {
            let class = if fraction >= 0.9 {
                "meter danger"
            } else if fraction >= 0.75 {
                "meter warn"
            } else {
                "meter"
            };
            let width = format!("width: {:.1}%", (fraction * 100.0).min(100.0));
            view! {
                <span class=class>
                    <span class="meter-fill" style=width></span>
                    <span class="meter-text">{format_percent(fraction)}</span>
                </span>
            }
            .into_any()
        }
        None => view! { <span class="muted">"–"</span> }.into_any(),
    }
}

/// The last hour as a tiny line; breaks where minutes have no samples.
#[component]
pub fn Sparkline(values: Vec<Option<u64>>, limit: Option<u64>) -> impl IntoView {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let max = values.iter().flatten().copied().max().unwrap_or(0);
    // Scale to the limit when close to it, so nearness to the limit is visible.
    let top = match limit {
        Some(l) if max as f64 > l as f64 * 0.5 => l.max(max),
        _ => max,
    }
    .max(1) as f64;
    let n = values.len().max(2) as f64;
    let mut d = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = i as f64 * W / (n - 1.0);
                let y = H - 1.0 - (*v as f64 / top) * (H - 2.0);
                d.push_str(&format!("{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" }));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    view! {
        <svg class="sparkline" width="120" height="24" viewBox="0 0 120 24" role="img" aria-label="working set, last hour">
            <path d=d fill="none" stroke="currentColor" stroke-width="1.5"/>
        </svg>
    }
}

/// The badge colour of a leak verdict word.
pub fn verdict_class(verdict: &str) -> &'static str {
    match verdict {
        "leak" => "badge danger",
        "growing" => "badge warn",
        "warming up" => "badge info",
        "stable" => "badge ok",
        _ => "badge",
    }
}

/// The leak detector's verdict as a badge, with the time left until the limit.
#[component]
pub fn LeakBadge(status: Option<LeakStatus>) -> impl IntoView {
    let Some(status) = status else {
        return view! { <span class="muted" title="not assessed yet">"–"</span> }.into_any();
    };
    let class = verdict_class(&status.verdict);
    let ttl = status.time_to_limit_seconds.map(|t| format!(" · limit in {}", format_duration(t)));
    view! {
        <span class=class data-verdict=status.verdict.clone() title=status.reason.clone()>{status.verdict.clone()}</span>
        <span class="muted ttl">{ttl}</span>
    }
    .into_any()
}

/// The signed-in user, fetched once per page and shared through context.
pub type MeResource = Resource<Result<Option<leakscope_model::Me>, ServerFnError>>;

pub fn provide_me() {
    provide_context::<MeResource>(Resource::new(|| (), |_| crate::server_fns::get_me()));
}

/// A form's action with the session's CSRF token added (unchanged for tokens).
pub fn with_csrf(action: String) -> impl Fn() -> String + Send + Sync + Clone + 'static {
    let me = expect_context::<MeResource>();
    move || me.get().and_then(Result::ok).flatten().map(|m| m.form_action(&action)).unwrap_or_else(|| action.clone())
}

/// True while the viewer may capture, download and share.
pub fn can_operate() -> impl Fn() -> bool + Send + Sync + Clone + 'static {
    let me = expect_context::<MeResource>();
    move || me.get().and_then(Result::ok).flatten().is_some_and(|m| m.can_operate())
}

/// Name, role, the admin page for admins, and sign-out.
#[component]
pub fn UserMenu() -> impl IntoView {
    let me = expect_context::<MeResource>();
    view! {
        <Suspense fallback=|| ()>
            {move || me.get().and_then(Result::ok).flatten().map(|m| {
                let admin = (m.role == "admin").then(|| view! { <a href="/admin">"Admin"</a> });
                let sign_out = m.csrf.is_some().then(|| view! {
                    <form method="post" action=m.form_action("/logout") class="inline"><button class="link">"Sign out"</button></form>
                });
                view! { <span class="user-menu" id="user-menu" data-role=m.role.clone()>{m.name.clone()} " · " {m.role.clone()} " " {admin} {sign_out}</span> }
            })}
        </Suspense>
    }
}

/// The viewer's offset from UTC in minutes once the page runs in a browser
/// (`None` while rendered on the server, where times say UTC).
#[derive(Clone, Copy)]
pub struct ViewerZone(pub RwSignal<Option<i32>>);

pub fn provide_viewer_zone() {
    let zone = RwSignal::new(None);
    provide_context(ViewerZone(zone));
    // Effects run only in the browser, after hydration.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        zone.set(Some(-(js_sys::Date::new_0().get_timezone_offset() as i32)));
    });
}

/// A moment in the viewer's zone (UTC until the page hydrates, or with JavaScript off).
#[component]
pub fn LocalTime(ms: i64) -> impl IntoView {
    let zone = use_context::<ViewerZone>().map(|z| z.0);
    let text = move || leakscope_model::format_timestamp(ms, zone.and_then(|z| z.get()));
    view! { <time datetime=leakscope_model::rfc3339_utc(ms) title=leakscope_model::format_timestamp(ms, None)>{text}</time> }
}

/// The host a page shows (`/hosts/<host>/…`); `None` on this server's own host's pages.
#[derive(Clone, Debug, Default)]
pub struct OnHost(pub Option<String>);

/// Called by a page on its route's `host` parameter: its parts then link and fetch on that host.
pub fn provide_host(host: Option<String>) -> Option<String> {
    let host = host.filter(|h| !h.is_empty());
    provide_context(OnHost(host.clone()));
    host
}

/// The host this page shows, for server functions (`None`: this server's own).
pub fn on_host() -> Option<String> {
    use_context::<OnHost>().and_then(|h| h.0)
}

/// What a link into this page's host starts with: `/hosts/<host>`, or nothing on this server's own.
pub fn host_prefix() -> String {
    on_host().map(|h| format!("/hosts/{h}")).unwrap_or_default()
}
