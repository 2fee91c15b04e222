//! `/`: every container with its memory, limit and last hour; sortable, live.

use leakscope_model::services::ServiceVerdict;
use leakscope_model::{format_bytes, format_duration, ContainerInfo, Overview};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::components::{verdict_class, LeakBadge, LimitCell, PercentOfLimit, Sparkline, StateBadge};
use crate::live::current_overview;
use crate::server_fns::get_overview;

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Host,
    Name,
    Image,
    Service,
    State,
    WorkingSet,
    Limit,
    Percent,
    Leak,
}

const COLUMNS: [(SortKey, &str, &str); 8] = [
    (SortKey::Name, "name", "Name"),
    (SortKey::Image, "image", "Image"),
    (SortKey::Service, "service", "Compose"),
    (SortKey::State, "state", "State"),
    (SortKey::WorkingSet, "ws", "Working set"),
    (SortKey::Limit, "limit", "Limit"),
    (SortKey::Percent, "pct", "% of limit"),
    (SortKey::Leak, "leak", "Leak verdict"),
];

fn sort_key(value: Option<String>) -> SortKey {
    if value.as_deref() == Some("host") {
        return SortKey::Host;
    }
    COLUMNS
        .iter()
        .find(|(_, key, _)| Some(*key) == value.as_deref())
        .map(|(k, _, _)| *k)
        .unwrap_or(SortKey::Name)
}

fn compose_label(c: &ContainerInfo) -> String {
    match (&c.compose_project, &c.compose_service) {
        (Some(p), Some(s)) => format!("{p}/{s}"),
        (None, Some(s)) => s.clone(),
        _ => String::new(),
    }
}

fn severity(c: &ContainerInfo) -> u8 {
    c.leak.as_ref().map(|l| l.severity()).unwrap_or(0)
}

fn ttl(c: &ContainerInfo) -> f64 {
    c.leak.as_ref().and_then(|l| l.time_to_limit_seconds).unwrap_or(f64::MAX)
}

fn sort_containers(list: &mut [ContainerInfo], key: SortKey, descending: bool) {
    let ws = |c: &ContainerInfo| c.memory.as_ref().map(|m| m.working_set_bytes);
    let pct = |c: &ContainerInfo| c.memory.as_ref().and_then(|m| m.limit_fraction()).unwrap_or(-1.0);
    list.sort_by(|a, b| {
        let order = match key {
            SortKey::Host => a.host.cmp(&b.host),
            SortKey::Name => a.name.cmp(&b.name),
            SortKey::Image => a.image.cmp(&b.image),
            SortKey::Service => compose_label(a).cmp(&compose_label(b)),
            SortKey::State => a.state.cmp(&b.state),
            SortKey::WorkingSet => ws(a).cmp(&ws(b)),
            // "No limit" sorts as the largest: it is the riskiest.
            SortKey::Limit => a.limit_bytes.unwrap_or(u64::MAX).cmp(&b.limit_bytes.unwrap_or(u64::MAX)),
            SortKey::Percent => pct(a).total_cmp(&pct(b)),
            // Most severe first when descending; among leaks, the soonest to hit its limit.
            SortKey::Leak => severity(a).cmp(&severity(b)).then_with(|| ttl(b).total_cmp(&ttl(a))),
        };
        let order = order.then_with(|| a.name.cmp(&b.name));
        if descending {
            order.reverse()
        } else {
            order
        }
    });
}

#[component]
pub fn DashboardPage() -> impl IntoView {
    let overview = Resource::new(|| (), |_| get_overview());
    let query = use_query_map();
    let sort = Memo::new(move |_| sort_key(query.read().get("sort")));
    let descending = Memo::new(move |_| query.read().get("dir").as_deref() == Some("desc"));
    let host = Memo::new(move |_| query.read().get("host").filter(|h| !h.is_empty()));

    view! {
        <Title text="Containers"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading containers…"</p> }>
            {move || {
                let resource = overview.get().map(|r| r.map_err(|e| e.to_string()));
                match resource {
                    None => None,
                    Some(Err(e)) => Some(view! { <div class="banner error">"Cannot load containers: " {e}</div> }.into_any()),
                    Some(Ok(first)) => {
                        let data = current_overview(Some(first)).unwrap_or_default();
                        Some(view! { <Dashboard data sort=sort.get() descending=descending.get() host=host.get()/> }.into_any())
                    }
                }
            }}
        </Suspense>
    }
}

/// The dashboard's own link with a sort and, when one is chosen, a host.
fn dashboard_href(sort: &str, descending: bool, host: Option<&str>) -> String {
    // Host names are letters, digits and `.-_`; anything else is escaped all the same.
    let encode = |h: &str| h.bytes().map(|b| if b.is_ascii_alphanumeric() || b"._-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    let host = host.map(|h| format!("&host={}", encode(h))).unwrap_or_default();
    format!("/?sort={sort}&dir={}{host}", if descending { "desc" } else { "asc" })
}

/// What rows are grouped under when sorted by host or by compose project.
fn group_of(c: &ContainerInfo, sort: SortKey) -> Option<String> {
    match sort {
        SortKey::Host => Some(c.host.clone()),
        SortKey::Service => Some(c.compose_project.clone().unwrap_or_default()),
        _ => None,
    }
}

#[component]
fn Dashboard(data: Overview, sort: SortKey, descending: bool, host: Option<String>) -> impl IntoView {
    let services = data.services;
    let local_host = data.engine.host_name.clone().unwrap_or_default();
    let mut containers = data.containers;
    // The host column only where there is more than one host to tell apart.
    let many_hosts = containers.iter().any(|c| c.host != local_host && !c.host.is_empty());
    // Every host with its containers (and how many are stale: its agent is away), for the filter.
    let mut hosts: Vec<(String, usize, usize)> = Vec::new();
    for c in &containers {
        match hosts.iter_mut().find(|h| h.0 == c.host) {
            Some(h) => {
                h.1 += 1;
                h.2 += usize::from(c.state == "stale");
            }
            None => hosts.push((c.host.clone(), 1, usize::from(c.state == "stale"))),
        }
    }
    hosts.sort();
    if let Some(h) = &host {
        containers.retain(|c| &c.host == h);
    }
    sort_containers(&mut containers, sort, descending);
    let running = containers.iter().filter(|c| c.is_running()).count();
    let unlimited = containers.iter().filter(|c| c.is_running() && c.limit_bytes.is_none()).count();
    let near_limit = containers
        .iter()
        .filter(|c| c.memory.as_ref().and_then(|m| m.limit_fraction()).is_some_and(|f| f >= 0.8))
        .count();
    let total = containers.len();
    let leaking = containers.iter().filter(|c| c.leak.as_ref().is_some_and(|l| l.leak)).count();
    let header = |key: SortKey, param: &'static str, label: &'static str| {
        let active = key == sort;
        // Clicking the active column flips the direction; numbers start largest-first.
        let numeric = matches!(key, SortKey::WorkingSet | SortKey::Limit | SortKey::Percent | SortKey::Leak);
        let next_desc = if active { !descending } else { numeric };
        let href = dashboard_href(param, next_desc, host.as_deref());
        let arrow = if active { if descending { " ▼" } else { " ▲" } } else { "" };
        let class = if numeric { "num" } else { "" };
        view! {
            <th class=class aria-sort=if active { if descending { "descending" } else { "ascending" } } else { "none" }>
                <a href=href data-sort=param>{label}{arrow}</a>
            </th>
        }
    };
    let host_header = many_hosts.then(|| header(SortKey::Host, "host", "Host"));
    let headers = COLUMNS.iter().map(|(key, param, label)| header(*key, param, label)).collect_view();
    let columns = COLUMNS.len() + 1 + usize::from(many_hosts);
    // Sorted by host or by compose project: a heading row where a group starts.
    let mut group_sizes: std::collections::HashMap<String, usize> = Default::default();
    for c in &containers {
        if let Some(g) = group_of(c, sort) {
            *group_sizes.entry(g).or_default() += 1;
        }
    }
    let mut current_group: Option<String> = None;
    let rows = containers
        .into_iter()
        .map(|c| {
            let group = group_of(&c, sort).filter(|g| current_group.as_ref() != Some(g));
            let heading = group.map(|g| {
                current_group = Some(g.clone());
                let count = group_sizes.get(&g).copied().unwrap_or(0);
                let label = match (sort, g.is_empty()) {
                    (SortKey::Service, true) => "not in a compose project".to_string(),
                    (SortKey::Service, false) => format!("compose project {g}"),
                    _ => format!("host {g}"),
                };
                view! {
                    <tr class="group" data-group=g><th colspan=columns>{label}<span class="muted">{format!(" · {count} container{}", if count == 1 { "" } else { "s" })}</span></th></tr>
                }
            });
            let remote = many_hosts && c.host != local_host;
            view! { {heading}<ContainerRow c many_hosts remote/> }
        })
        .collect_view();
    let host_filter = (hosts.len() > 1).then(|| {
        let chosen = host.clone();
        let all_href = dashboard_href("name", false, None);
        let chips = hosts
            .into_iter()
            .map(|(name, count, stale)| {
                let href = dashboard_href("name", false, Some(&name));
                let active = chosen.as_deref() == Some(name.as_str());
                let away = (stale > 0).then_some(" · not connected");
                view! {
                    <a href=href class="chip" class:active=active data-host-filter=name.clone()>
                        {name.clone()}<span class="muted">{format!(" {count}")}{away}</span>
                    </a>
                }
            })
            .collect_view();
        view! {
            <nav class="host-filter" id="host-filter" aria-label="Hosts">
                <span class="muted">"Hosts: "</span>
                <a href=all_href class="chip" class:active=chosen.is_none()>"all"</a>
                {chips}
            </nav>
        }
    });
    view! {
        <section class="summary">
            <div class="stat"><span class="stat-value">{running}</span><span class="stat-label">"running"</span></div>
            <div class="stat"><span class="stat-value">{total}</span><span class="stat-label">"containers"</span></div>
            <div class="stat" class:warn=unlimited.gt(&0)><span class="stat-value">{unlimited}</span><span class="stat-label">"running without a limit"</span></div>
            <div class="stat" class:danger=near_limit.gt(&0)><span class="stat-value">{near_limit}</span><span class="stat-label">"at 80 % of limit or more"</span></div>
            <div class="stat" class:danger=leaking.gt(&0)><span class="stat-value" id="leak-count">{leaking}</span><span class="stat-label">"leaking"</span></div>
        </section>
        {host_filter}
        {(!services.is_empty()).then(|| view! { <Services services local_host=local_host.clone()/> })}
        <table class="grid" id="containers">
            <thead><tr>{host_header}{headers}<th class="spark">"Last hour"</th></tr></thead>
            <tbody>
                {rows}
            </tbody>
        </table>
        {(total == 0).then(|| view! { <p class="empty">"No containers on this engine yet. Start one and it appears here within seconds."</p> })}
    }
}

/// Compose services with their replicas grouped: one verdict per service.
#[component]
fn Services(services: Vec<ServiceVerdict>, local_host: String) -> impl IntoView {
    let many_hosts = services.iter().any(|s| s.host != local_host && !s.host.is_empty());
    let rows = services
        .into_iter()
        .map(|s| {
            let label = s.label();
            let remote = many_hosts && s.host != local_host;
            let host = s.host.clone();
            let key = label.clone();
            let class = verdict_class(&s.verdict);
            let ttl = s.time_to_limit_seconds.map(|t| format!(" · limit in {}", format_duration(t)));
            let leaking = s
                .leaking
                .iter()
                .map(|name| view! { <a href=container_href(&host, name, remote) class="name">{name.clone()}</a>" " })
                .collect_view();
            view! {
                <tr data-service=key data-verdict=s.verdict.clone()>
                    <td>{label}</td>
                    {many_hosts.then(|| view! { <td class="host">{s.host.clone()}</td> })}
                    <td class="num">{s.replicas.len()}</td>
                    <td class="leak"><span class=class>{s.verdict.clone()}</span><span class="muted ttl">{ttl}</span></td>
                    <td>{leaking}</td>
                    <td class="reason">{s.reason}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="grid" id="services">
            <thead><tr><th>"Compose service"</th>{many_hosts.then(|| view! { <th>"Host"</th> })}<th class="num">"Replicas"</th><th>"Verdict"</th><th>"Leaking replicas"</th><th>"Why"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// A container's page: on a host other than this server's own, under `/hosts/<host>/`.
fn container_href(host: &str, name: &str, remote: bool) -> String {
    if remote {
        format!("/hosts/{host}/containers/{name}")
    } else {
        format!("/containers/{name}")
    }
}

#[component]
fn ContainerRow(c: ContainerInfo, many_hosts: bool, remote: bool) -> impl IntoView {
    // A host reached through an agent: the page is the hub's, its data and captures the agent's.
    let href = container_href(&c.host, &c.name, remote);
    let (host, data_host) = (c.host.clone(), c.host.clone());
    let working_set = c
        .memory
        .as_ref()
        .map(|m| format_bytes(m.working_set_bytes))
        .unwrap_or_else(|| "–".into());
    let compose = compose_label(&c);
    let limit = c.limit_bytes;
    let sparkline = c.sparkline.clone();
    let name = c.name.clone();
    let image = c.image.clone();
    let state = c.state.clone();
    let (data_name, data_state, image_title) = (name.clone(), state.clone(), image.clone());
    view! {
        <tr data-name=data_name data-state=data_state data-host=data_host>
            {many_hosts.then(|| view! { <td class="host">{host}</td> })}
            <td><a href=href class="name">{name}</a></td>
            <td class="image" title=image_title>{image}</td>
            <td>{compose}</td>
            <td><StateBadge state/></td>
            <td class="num ws">{working_set}</td>
            <td class="num"><LimitCell limit/></td>
            <td class="num"><PercentOfLimit container=c.clone()/></td>
            <td class="leak"><LeakBadge status=c.leak.clone()/></td>
            <td class="spark"><Sparkline values=sparkline limit=limit/></td>
        </tr>
    }
}
