//! `/containers/<name>`: the memory chart over a range kept in the URL.

use leakscope_model::capture::CaptureJob;
use leakscope_model::dumps::DumpFilter;
use leakscope_model::{format_bytes, ContainerDetail, ContainerInfo, TimeRange, PRESETS};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::components::{LeakBadge, LimitCell, PercentOfLimit, StateBadge};
use crate::live::{current_overview, LiveOverview};
use crate::pages::dumps::DumpGroups;
use crate::server_fns::{get_capture, get_container, get_events, get_limit_advice, get_logs, list_dumps};

/// The viewer's offset from UTC in minutes (east positive); 0 on the server.
fn browser_tz_offset() -> i32 {
    #[cfg(feature = "hydrate")]
    {
        -(js_sys::Date::new_0().get_timezone_offset() as i32)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0
    }
}

#[component]
pub fn ContainerPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    let host = crate::components::provide_host(params.read_untracked().get("host"));
    let detail = Resource::new(move || name.get(), move |n| get_container(n, host.clone()));
    let first_name = name.get_untracked();

    view! {
        // `try_get`: leptos_meta renders the title into <head> after the body, and under
        // concurrent server rendering the page's owner (and this memo) may already be
        // disposed by then; reading it with `get` panicked one request in ten.
        <Title text=move || name.try_get().unwrap_or_else(|| first_name.clone())/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                detail.get().map(|result| match result {
                    Ok(Some(detail)) => view! { <ContainerView detail query/> }.into_any(),
                    Ok(None) => view! {
                        <section class="empty">
                            <h1>"No such container"</h1>
                            <p>"Leakscope has never seen a container named " <code>{name.get()}</code> "."</p>
                            <p><a href="/">"All containers"</a></p>
                        </section>
                    }.into_any(),
                    Err(e) => view! { <div class="banner error">"Cannot load this container: " {e.to_string()}</div> }.into_any(),
                })
            }}
        </Suspense>
    }
}

#[component]
fn ContainerView(detail: ContainerDetail, query: Memo<leptos_router::params::ParamsMap>) -> impl IntoView {
    let name = detail.info.name.clone();
    let LiveOverview(live) = expect_context::<LiveOverview>();
    let initial = detail.info.clone();
    // Live numbers from the stream once it speaks, else what the page loaded with.
    let info = Memo::new(move |_| {
        live.get()
            .and_then(|o| o.containers.into_iter().find(|c| c.id == initial.id))
            .unwrap_or_else(|| initial.clone())
    });
    let interval_ms = Memo::new(move |_| current_overview(None).map(|o| o.sample_interval_ms).unwrap_or(2000));

    // Client-side only values: the viewer's zone and a tick that refreshes a live chart.
    let tz = RwSignal::new(0i32);
    let tick = RwSignal::new(0u64);
    Effect::new(move |_| tz.set(browser_tz_offset()));
    Effect::new(move |_| {
        if let Some(o) = live.get() {
            tick.set(o.updated_ms as u64 / interval_ms.get_untracked().max(1000) / 3);
        }
    });

    let range_query = Memo::new(move |_| {
        let q = query.read();
        let tz_offset = q.get("tz").and_then(|t| t.parse().ok()).unwrap_or(0);
        let range = TimeRange::from_query(q.get("range").as_deref(), q.get("from").as_deref(), q.get("to").as_deref(), tz_offset, 0);
        match range {
            Ok(r) if r.preset.is_some() => (r.to_query(), r.preset.clone(), None),
            Ok(r) => (r.to_query(), None, None),
            Err(e) => ("range=1h".to_string(), Some("1h".to_string()), Some(e.to_string())),
        }
    });
    let is_preset = move || range_query.get().1.is_some();
    let base = crate::components::host_prefix();
    let chart_src = {
        let (name, base) = (name.clone(), base.clone());
        move |theme: &str, ext: &str| {
            let (q, _, _) = range_query.get();
            let live_tick = if is_preset() { format!("&v={}", tick.get()) } else { String::new() };
            format!("{base}/containers/{name}/memory.{ext}?{q}&tz={}&theme={theme}{live_tick}", tz.get())
        }
    };
    let src_light = {
        let f = chart_src.clone();
        move || f("light", "svg")
    };
    let src_dark = {
        let f = chart_src.clone();
        move || f("dark", "svg")
    };
    let png_href = {
        let f = chart_src.clone();
        move || f("light", "png")
    };
    let presets = {
        let (name, base) = (name.clone(), base.clone());
        PRESETS
            .iter()
            .map(|p| {
                let href = format!("{base}/containers/{name}?range={}", p.key);
                let key = p.key;
                view! {
                    <a href=href class="range" class:active=move || range_query.get().1.as_deref() == Some(key) data-range=key>{key}</a>
                }
            })
            .collect_view()
    };
    let api_href = {
        let (name, base) = (name.clone(), base.clone());
        move || format!("{base}/api/v1/containers/{name}/memory?{}", range_query.get().0)
    };
    // Click on the chart: the log lines of that minute (`?logs=<ms>` in the URL, so it is shareable).
    let logs_at = Memo::new(move |_| query.read().get("logs").and_then(|v| v.parse::<i64>().ok()));
    let navigate = leptos_router::hooks::use_navigate();
    let on_chart_click = {
        let (name, base_path) = (name.clone(), base.clone());
        move |ev: leptos::ev::MouseEvent| {
            let q = query.read_untracked();
            let tz_offset = q.get("tz").and_then(|t| t.parse().ok()).unwrap_or(0);
            let Ok(range) = TimeRange::from_query(q.get("range").as_deref(), q.get("from").as_deref(), q.get("to").as_deref(), tz_offset, js_now_ms())
            else {
                return;
            };
            let trend = info.get_untracked().leak;
            let axis_end = leakscope_model::chart_axis_end(
                range.from_ms,
                range.to_ms,
                trend.as_ref().map(|t| t.window_end_ms),
                trend.as_ref().and_then(|t| t.time_to_limit_seconds.map(|s| t.window_end_ms + (s * 1000.0) as i64)),
            );
            let Some(fraction) = click_fraction(&ev) else { return };
            let at = range.from_ms + ((axis_end - range.from_ms) as f64 * fraction) as i64;
            let at = at.min(js_now_ms());
            let (base, _, _) = range_query.get_untracked();
            navigate(&format!("{base_path}/containers/{name}?{base}&logs={at}"), Default::default());
        }
    };
    let logs_name = name.clone();
    let form_action = format!("{base}/containers/{name}");
    let present = detail.present;
    let capture_name = name.clone();
    let events_name = name.clone();
    let advice_name = name.clone();

    view! {
        <section class="container-head">
            <div>
                <h1>{name.clone()}</h1>
                <p class="muted">
                    {(!detail.info.host.is_empty()).then(|| view! { "on " <span id="container-host">{detail.info.host.clone()}</span> " · " })}
                    {detail.info.image.clone()}
                    {detail.info.compose_service.clone().map(|s| format!(" · compose service {s}"))}
                    " · " <code class="id">{detail.info.id.chars().take(12).collect::<String>()}</code>
                </p>
            </div>
            {move || {
                let c: ContainerInfo = info.get();
                let ws = c.memory.as_ref().map(|m| format_bytes(m.working_set_bytes)).unwrap_or_else(|| "–".into());
                let usage = c.memory.as_ref().map(|m| format_bytes(m.usage_bytes)).unwrap_or_else(|| "–".into());
                view! {
                    <dl class="facts">
                        <div><dt>"State"</dt><dd><StateBadge state=c.state.clone()/></dd></div>
                        <div><dt>"Working set"</dt><dd class="ws">{ws}</dd></div>
                        <div><dt>"Usage"</dt><dd>{usage}</dd></div>
                        <div><dt>"Limit"</dt><dd><LimitCell limit=c.limit_bytes/></dd></div>
                        <div><dt>"% of limit"</dt><dd><PercentOfLimit container=c.clone()/></dd></div>
                    </dl>
                }
            }}
        </section>
        {(!present).then(|| view! { <div class="banner">"This container no longer exists on the engine; its recorded history is shown."</div> })}
        {move || info.get().leak.map(|status| {
            let reason = status.reason.clone();
            let verdict = status.verdict.clone();
            let slope = format!("{}/h", format_bytes(status.slope_bytes_per_hour.max(0.0) as u64));
            view! {
                <p class="verdict" id="leak-verdict" data-verdict=verdict>
                    <strong>"Leak verdict: "</strong>
                    <LeakBadge status=Some(status)/>
                    <span class="reason">{reason} " (floor trend " {slope} ")."</span>
                </p>
            }
        })}
        {move || range_query.get().2.map(|e| view! { <div class="banner error">{e} " Showing the last hour."</div> })}
        <section class="chart-panel">
            <div class="range-bar">
                <nav class="presets" aria-label="Time range">{presets}</nav>
                <form class="custom-range" method="get" action=form_action>
                    <label>"From " <input type="datetime-local" name="from"/></label>
                    <label>"To " <input type="datetime-local" name="to"/></label>
                    <input type="hidden" name="tz" prop:value=move || tz.get().to_string()/>
                    <button type="submit">"Apply"</button>
                </form>
                <span class="live-note">{move || if is_preset() { "live · updates as samples arrive" } else { "fixed range" }}</span>
            </div>
            <picture>
                <source media="(prefers-color-scheme: dark)" srcset=src_dark/>
                <img id="memory-chart" class="chart" src=src_light width="1000" height="320" on:click=on_chart_click
                    title="Click a moment to see the container's log lines from that minute"
                    alt="Memory over the chosen range: working set, usage and limit"/>
            </picture>
            <p class="chart-links muted">
                <a href=png_href>"PNG"</a> " · " <a href=api_href>"JSON API"</a>
                " · times in your zone; the band shows min–max working set per point"
            </p>
        </section>
        {move || logs_at.get().map(|at| view! { <LogsPanel name=logs_name.clone() at/> })}
        <LimitAdvicePanel name=advice_name limit=detail.info.limit_bytes/>
        <EventsPanel name=events_name/>
        <CapturePanel name=capture_name running=Signal::derive(move || info.get().state == "running")
            limit_share=Signal::derive(move || info.get().memory.and_then(|m| m.limit_fraction()))
            auto_capture=detail.info.auto_capture.clone() query/>
        // A report freezes dumps of this server's own store; another host's dumps stay there.
        {crate::components::on_host().is_none().then(|| view! { <ReportForm name=detail.info.name.clone()/> })}
    }
}

/// "Create report": freezes a window of this container with chosen dumps into a link (operators).
#[component]
fn ReportForm(name: String) -> impl IntoView {
    let may_create = crate::components::can_operate();
    // `?report=<id>,<id>` (from a dump or diff page) ticks those dumps.
    let query = use_query_map();
    let preselected = move || query.read().get("report").unwrap_or_default();
    let dumps = {
        let name = name.clone();
        Resource::new(move || name.clone(), |n| list_dumps(DumpFilter { container: Some(n), ..Default::default() }, None))
    };
    let windows = [("3600", "last hour"), ("21600", "last 6 hours"), ("86400", "last 24 hours"), ("604800", "last 7 days")];
    view! {
        <Suspense fallback=|| ()>
            {move || may_create().then(|| {
                let chosen = preselected();
                let list = dumps.get().and_then(Result::ok).unwrap_or_default();
                let none = list.is_empty().then(|| view! {
                    <p class="muted" id="report-no-dumps">"No heap dumps of this container yet: capture one above to add its analysis to the report, or create the report with the chart alone."</p>
                });
                let choices = list.into_iter().map(|d| view! {
                    <label class="dump-choice"><input type="checkbox" name="dumps" value=d.id.clone() checked=chosen.split(',').any(|c| c == d.id)/>
                        {format!(" {} · {} · {}", crate::pages::dumps::utc(d.created_ms), format_bytes(d.size_bytes), d.trigger)}</label>
                }).collect_view();
                view! {
                    <section class="report-form panel" id="report-form">
                        <h2>"Create report"</h2>
                        <p class="muted">"Freezes this window (series, verdict, events) and the chosen dumps with their analyses into a link for the team; two dumps add their diff."</p>
                        <form method="post" action=crate::components::with_csrf("/reports".to_string()) class="stack">
                            <input type="hidden" name="container" value=name.clone()/>
                            <label>"Title " <input name="title" id="report-title-input" placeholder=format!("Memory of {name}")/></label>
                            <label>"Window " <select name="window">
                                {windows.iter().map(|(v, l)| view! { <option value=*v selected=*v == "86400">{*l}</option> }).collect_view()}
                            </select></label>
                            <fieldset><legend>"Heap dumps"</legend>{none}{choices}</fieldset>
                            <label>"Notes (Markdown) " <textarea name="notes" id="report-notes-input" rows="4"></textarea></label>
                            <button type="submit" id="create-report">"Create report"</button>
                        </form>
                    </section>
                }
            })}
        </Suspense>
    }
}

/// Where on the plot area a click landed, 0..1 (the chart's plot spans x = 80..992 of 1000).
fn click_fraction(ev: &leptos::ev::MouseEvent) -> Option<f64> {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let target = ev.target()?.dyn_into::<web_sys::Element>().ok()?;
        let width = target.client_width().max(1) as f64;
        let x = ev.offset_x() as f64 * 1000.0 / width;
        Some(((x - 80.0) / 912.0).clamp(0.0, 1.0))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = ev;
        None
    }
}

/// The container's log lines in the minute around `at`.
#[component]
fn LogsPanel(name: String, at: i64) -> impl IntoView {
    let host = crate::components::on_host();
    let logs = Resource::new(move || (name.clone(), at), move |(n, at)| get_logs(n, at, host.clone()));
    view! {
        <section class="logs-panel" id="logs-panel">
            <h2>"Logs around " {utc_short(at)}</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading logs…"</p> }>
                {move || logs.get().map(|r| match r {
                    Ok(excerpt) if excerpt.lines.is_empty() => view! { <p class="muted">"No log lines in that minute."</p> }.into_any(),
                    Ok(excerpt) => {
                        let more = excerpt.truncated.then(|| view! { <p class="muted">"(first 500 lines)"</p> });
                        let lines = excerpt.lines.into_iter().map(|l| view! {
                            <div class=format!("log-line {}", l.stream)><time>{l.timestamp}</time> " " {l.text}</div>
                        }).collect_view();
                        view! { <pre class="logs">{lines}</pre> {more} }.into_any()
                    }
                    Err(e) => view! { <div class="banner error">"Cannot read the logs: " {e.to_string()}</div> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

/// A limit that fits what the container really used, with the command.
#[component]
fn LimitAdvicePanel(name: String, limit: Option<u64>) -> impl IntoView {
    let host = crate::components::on_host();
    let advice = Resource::new(move || name.clone(), move |n| get_limit_advice(n, host.clone()));
    view! {
        <Transition fallback=|| ()>
            {move || advice.get().and_then(Result::ok).flatten().map(|a| {
                let now = match limit {
                    None => "This container has no memory limit. ".to_string(),
                    Some(l) => format!("Its limit is {}. ", format_bytes(l)),
                };
                view! {
                    <p class="limit-advice" id="limit-advice">
                        {now}
                        "Suggested limit: " <strong>{format_bytes(a.suggested_bytes)}</strong>
                        {format!(" (99.9 % of the minutes over {} h peaked below {}, plus 25 %): ", a.observed_minutes / 60, format_bytes(a.p999_bytes))}
                        <code>{a.command.clone()}</code>
                    </p>
                }
            })}
        </Transition>
    }
}

/// OOM kills and other lifecycle events: what the chart's markers mean.
#[component]
fn EventsPanel(name: String) -> impl IntoView {
    let host = crate::components::on_host();
    let events = Resource::new(move || name.clone(), move |n| get_events(n, host.clone()));
    view! {
        <Transition fallback=|| ()>
            {move || events.get().and_then(Result::ok).map(|list| {
                let ooms = list.iter().filter(|e| e.is_oom_kill()).count();
                let rows = list.iter().take(12).map(|e| {
                    let class = if e.is_oom_kill() { "event oom" } else { "event" };
                    view! { <li class=class data-action=e.action.clone()><time>{utc_short(e.time_ms)}</time> " " {e.label.clone()}</li> }
                }).collect_view();
                view! {
                    <section class="events-panel">
                        <h2>"Events " <span class="muted" id="oom-count" data-ooms=ooms.to_string()>{format!("· {ooms} OOM kill{} in 7 days", if ooms == 1 { "" } else { "s" })}</span></h2>
                        {if list.is_empty() {
                            view! { <p class="muted">"No restarts, exits or OOM kills recorded in the last 7 days."</p> }.into_any()
                        } else {
                            view! { <ul class="events">{rows}</ul> }.into_any()
                        }}
                    </section>
                }
            })}
        </Transition>
    }
}

fn utc_short(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let rem = secs.rem_euclid(86_400);
    let days_ago = (js_now_ms() / 1000).div_euclid(86_400) - secs.div_euclid(86_400);
    let day = if days_ago <= 0 { String::new() } else { format!("{days_ago} d ago ") };
    format!("{day}{:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn js_now_ms() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

const STAGES: [&str; 5] = ["locating", "dumping", "copying", "storing", "done"];

/// *Capture heap dump*, the job's stages as they happen, and this container's dump history.
#[component]
fn CapturePanel(
    name: String,
    running: Signal<bool>,
    limit_share: Signal<Option<f64>>,
    auto_capture: Option<String>,
    query: Memo<leptos_router::params::ParamsMap>,
) -> impl IntoView {
    let job_param = Memo::new(move |_| query.read().get("capture"));
    // Bumped while a job runs, so the job (and then the history) is fetched again.
    let tick = RwSignal::new(0u32);
    let host = crate::components::on_host();
    let job = {
        let (name, host) = (name.clone(), host.clone());
        Resource::new(move || (name.clone(), job_param.get(), tick.get()), move |(n, j, _)| get_capture(n, j, host.clone()))
    };
    let finished_dump = Memo::new(move |_| job.get().and_then(Result::ok).flatten().and_then(|j| j.dump_id));
    let dumps = {
        let name = name.clone();
        Resource::new(
            move || (name.clone(), finished_dump.get()),
            move |(n, _)| list_dumps(DumpFilter { container: Some(n), ..Default::default() }, host.clone()),
        )
    };
    Effect::new(move |_| {
        let still_running = job.get().and_then(Result::ok).flatten().is_some_and(|j| j.state == "running");
        if still_running {
            set_timeout(move || tick.update(|t| *t += 1), std::time::Duration::from_millis(700));
        }
    });
    let base = crate::components::host_prefix();
    let action = format!("{base}/containers/{name}/capture");
    let may_capture = crate::components::can_operate();
    // Another host's dumps are listed on this page (the dumps page lists this server's own).
    let history_href = if base.is_empty() { format!("/dumps?container={name}") } else { format!("{base}/containers/{name}#capture-button") };
    view! {
        <section class="capture-panel">
            <div class="capture-head">
                <h2>"Heap dumps"</h2>
                <form method="post" action=crate::components::with_csrf(action.clone())>
                    <button id="capture-button" type="submit" disabled=move || !running.get() || !may_capture()
                        title="Finds the process in the container and captures the richest view of its memory, with nothing installed in the image: a heap dump (Java), heap snapshot (Node.js), object graph (Python), heap profile (Go with pprof), else a memory map">
                        "Capture heap dump"
                    </button>
                    <select name="kind" id="capture-kind" title="What to capture">
                        <option value="">"richest available"</option>
                        <option value="memory-map">"memory map (any process)"</option>
                        <option value="core">"core dump for gdb (stops it)"</option>
                    </select>
                    {move || limit_share.get().filter(|share| *share > 0.6).map(|share| view! {
                        <label id="capture-confirm" class="warning">
                            <input type="checkbox" name="confirm"/>
                            {format!(" This container uses {:.0} % of its memory limit. A Node.js snapshot pauses the process \
                                and can need about twice its heap, so the container may be OOM-killed: tick to capture anyway.", share * 100.0)}
                        </label>
                    })}
                </form>
                <a href=history_href class="muted">"all dumps of this container"</a>
            </div>
            <p class="muted" id="capture-risks">
                "A dump holds everything in the process's memory, secrets included: downloads are audited. "
                "A dump pauses the process while it is written. For Node.js, Leakscope opens the process's inspector "
                "(SIGUSR1, 127.0.0.1:9229 inside the container) for the seconds of the snapshot and closes it again; "
                "while it is open, any process in that container could run code in node. For Python, Leakscope's helper runs "
                "for a moment in a container beside this one with CAP_SYS_PTRACE only, stops the interpreter's main thread "
                "for milliseconds to queue its walk of the heap (which then runs inside the interpreter and holds it while it "
                "walks), and is removed again; while attached, it could run any code in the process. On CPython 3.14 no thread "
                "is stopped: the helper (also with CAP_SETUID/SETGID, to hand the walk over as the process's user) writes a "
                "request into the interpreter through its remote-debugging interface (PEP 768), which runs the walk at its next "
                "safe point; a process started with -X disable_remote_debug is left alone. A memory map (any process) "
                "and a Go heap profile (from the program's own net/http/pprof on loopback) stop nothing. A core dump (any process, "
                "for gdb; only when asked for) is written by the same helper beside the container with CAP_SYS_PTRACE: every "
                "thread of the process is stopped while its memory is copied (about a second per GiB), then let go; it holds "
                "all of the process's memory."
            </p>
            {auto_capture.map(|text| view! {
                <p class="muted" id="auto-capture">"Automatic dumps: " {text}
                    " — a first dump when it triggers, a second after further growth (the diff is linked below)."</p>
            })}
            <Transition fallback=|| ()>
                {move || job.get().and_then(Result::ok).flatten().map(|j| view! { <CaptureStatus job=j action=action.clone()/> })}
            </Transition>
            <Transition fallback=|| view! { <p class="muted">"Loading dumps…"</p> }>
                {move || dumps.get().map(|r| match r {
                    Ok(list) => {
                        // The newest dump, when its heap explains only part of what the container holds.
                        let outside = list.first().and_then(|d| Some((d.outside_heap_note()?, d.id.clone())));
                        view! {
                            {outside.map(|(note, id)| view! {
                                <div class="banner" id="outside-heap">{note} " " <a href=format!("{}/dumps/{id}", crate::components::host_prefix())>"The dump"</a></div>
                            })}
                            <DumpGroups list empty_text="No heap dumps of this container yet."/>
                        }.into_any()
                    }
                    Err(e) => view! { <div class="banner error">"Cannot list dumps: " {e.to_string()}</div> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

/// What a capture-kind button says.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "heap-dump" => "heap dump",
        "heap-snapshot" => "heap snapshot",
        "object-graph" => "object graph",
        "heap-profile" => "heap profile",
        "memory-map" => "memory map",
        "core" => "core dump",
        _ => "capture",
    }
}

#[component]
fn CaptureStatus(job: CaptureJob, action: String) -> impl IntoView {
    let current = STAGES.iter().position(|s| *s == job.stage);
    let stages = STAGES
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let class = match current {
                Some(c) if i < c || job.state == "done" => "stage passed",
                Some(c) if i == c && job.state == "running" => "stage current",
                Some(c) if i == c => "stage stopped",
                _ => "stage",
            };
            view! { <li class=class>{*stage}</li> }
        })
        .collect_view();
    let copied = (job.bytes_copied > 0).then(|| {
        let total = job.bytes_total.map(|t| format!(" of {}", format_bytes(t))).unwrap_or_default();
        format!("{}{total} copied at {}/s", format_bytes(job.bytes_copied), format_bytes(job.rate_bytes_per_sec as u64))
    });
    let how = job.recipe.clone().map(|r| match r.as_str() {
        "jcmd" => "with the image's jcmd".to_string(),
        "java-attach" => "with Leakscope's attach client on the container's own java (no jcmd, /tmp is noexec)".to_string(),
        "node-inspector" => "over node's inspector, with Leakscope's helper".to_string(),
        "node-client" => "over node's inspector, with Leakscope's script on the container's own node (/tmp is noexec)".to_string(),
        "python-walk" => "by Leakscope's walk inside the interpreter, queued through ptrace by the helper beside the container".to_string(),
        "python-remote-debug" => "by Leakscope's walk inside the interpreter, handed to it through CPython's remote-debugging interface (PEP 768) by the helper beside the container; no thread is stopped".to_string(),
        "memory-map" => "as a memory map (/proc/<pid>/smaps, threads, open files) read by Leakscope's helper; nothing is stopped".to_string(),
        "core" => "as an ELF core dump for gdb, written by Leakscope's helper beside the container (ptrace; every thread stopped while its memory is copied)".to_string(),
        "go-pprof" => "as a heap profile from the program's own net/http/pprof (/debug/pprof/heap on loopback); nothing is stopped".to_string(),
        _ => "with Leakscope's attach helper (the image has no jcmd)".to_string(),
    });
    let objects = job.objects_total.filter(|t| *t > 0).map(|total| {
        let done = job.objects_done.unwrap_or(0);
        format!(" · V8 snapshot: {done} of {total} objects")
    });
    let inspector = job
        .inspector
        .clone()
        .map(|i| {
            let ptrace = job.runtime.as_deref() == Some("python") || job.kind.as_deref() == Some("core");
            let what = if job.recipe.as_deref() == Some("python-remote-debug") {
                "Remote debugging: "
            } else if ptrace {
                "ptrace: "
            } else {
                "Inspector: "
            };
            view! { <p class="muted" id="capture-inspector">{what} {i}</p> }
        });
    // Every process of the container with what can be captured of it (a button per kind).
    let failed = job.state == "failed";
    let process_rows = job
        .processes
        .iter()
        .map(|process| {
            let pid = process.pid.to_string();
            let rss = process.rss_bytes.map(|b| format!(" · {} resident", format_bytes(b)));
            let buttons = process
                .kinds
                .iter()
                .map(|kind| {
                    let title = (kind == "core").then_some("Stops every thread of the process while its memory is copied (ptrace from Leakscope's helper beside the container, CAP_SYS_PTRACE only); opens in gdb");
                    view! { <button type="submit" name="kind" value=kind.clone() title=title>{kind_label(kind)}</button> " " }
                })
                .collect_view();
            view! {
                <form method="post" action=crate::components::with_csrf(action.clone()) class="jvm-choice">
                    <input type="hidden" name="pid" value=pid.clone()/>
                    <strong>{process.runtime.clone()} " pid " {pid}</strong> " " {buttons}
                    " " <code>{process.command.clone()}</code> {rss}
                    {process.note.clone().map(|n| view! { <span class="muted">" — " {n}</span> })}
                </form>
            }
        })
        .collect_view();
    let choices = (!job.processes.is_empty()).then(|| view! {
        <details id="capture-processes" open=failed>
            <summary>{format!("Processes in this container ({}), and what can be captured of each", job.processes.len())}</summary>
            {process_rows}
        </details>
    });
    let running = job.state == "running";
    view! {
        <div id="capture-job" class=format!("capture-job {}", job.state) data-state=job.state.clone() data-stage=job.stage.clone()>
            {running.then(|| view! { <noscript><meta http-equiv="refresh" content="2"/></noscript> })}
            <ol class="stages">{stages}</ol>
            <p class="muted">
                {job.pid.map(|p| format!("{} pid {p} ", job.runtime.as_deref().unwrap_or("process")))}
                {how}
                {objects}
                {copied.map(|c| format!(" · {c}"))}
            </p>
            {inspector}
            {job.error.clone().map(|e| view! { <div class="banner error" id="capture-error">"Capture failed: " {e}</div> })}
            {choices}
            {job.dump_id.clone().map(|id| {
                let base = crate::components::host_prefix();
                view! {
                    <p id="capture-done">"Dump stored. " <a href=format!("{base}/dumps/{id}")>"Open its analysis"</a>
                    " · " <a href=format!("{base}/dumps/{id}/download")>"download the dump"</a></p>
                }
            })}
        </div>
    }
}
