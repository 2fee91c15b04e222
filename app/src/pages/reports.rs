//! `/reports`, `/reports/<slug>` and the public `/r/<token>`: frozen leak
//! reports, rendered completely on the server (chart and notes included) so
//! they read with JavaScript off and arrive fast.

use leakscope_model::analysis::Suspect;
use leakscope_model::reports::ReportPage;
use leakscope_model::{format_bytes, format_percent, format_signed_bytes};
use leptos::prelude::*;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::use_params_map;

use crate::components::{can_operate, with_csrf, LocalTime};
use crate::server_fns::{get_public_report, get_report, list_reports};

#[component]
pub fn ReportsPage() -> impl IntoView {
    let reports = Resource::new(|| (), |_| list_reports());
    view! {
        <Title text="Reports"/>
        <h1>"Leak reports"</h1>
        <p class="muted">"Frozen windows of a container's memory with its dumps and their diff, as links for the team."</p>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || reports.get().map(|r| match r {
                Ok(list) if list.is_empty() => view! {
                    <p class="muted">"No reports yet. Open a container and use " <b>"Create report"</b> "."</p>
                }.into_any(),
                Ok(list) => {
                    let rows = list.into_iter().map(|r| view! {
                        <tr>
                            <td><a href=format!("/reports/{}", r.slug)>{r.title}</a></td>
                            <td>{r.container_name}</td>
                            <td><LocalTime ms=r.from_ms/> " – " <LocalTime ms=r.to_ms/></td>
                            <td>{r.created_by}</td>
                            <td><LocalTime ms=r.created_ms/></td>
                            <td>{r.public.then_some("public link")}</td>
                        </tr>
                    }).collect_view();
                    view! {
                        <div class="scroll-x"><table class="grid" id="reports">
                            <thead><tr><th>"Title"</th><th>"Container"</th><th>"Window"</th><th>"By"</th><th>"Made"</th><th></th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table></div>
                    }.into_any()
                }
                Err(e) => view! { <div class="banner error">{e.to_string()}</div> }.into_any(),
            })}
        </Suspense>
    }
}

/// `/reports/<slug>` for the team.
#[component]
pub fn ReportPage() -> impl IntoView {
    let slug = use_params_map().read_untracked().get("slug").unwrap_or_default();
    let page = Resource::new(move || slug.clone(), get_report);
    view! { <ReportLoader page/> }
}

/// `/r/<token>`: anyone holding the link, no account.
#[component]
pub fn PublicReportPage() -> impl IntoView {
    let token = use_params_map().read_untracked().get("token").unwrap_or_default();
    let page = Resource::new(move || token.clone(), get_public_report);
    view! { <ReportLoader page/> }
}

#[component]
fn ReportLoader(page: Resource<Result<Option<ReportPage>, ServerFnError>>) -> impl IntoView {
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Ok(Some(page)) => view! { <ReportView page/> }.into_any(),
                Ok(None) => view! {
                    <Title text="No such report"/>
                    <section class="empty"><h1>"No such report"</h1><p>"The link is wrong, or its public sharing was stopped."</p></section>
                }.into_any(),
                Err(e) => view! { <div class="banner error">"Cannot load this report: " {e.to_string()}</div> }.into_any(),
            })}
        </Suspense>
    }
}

fn suspects_view(suspects: Vec<Suspect>) -> impl IntoView {
    if suspects.is_empty() {
        return view! { <p class="muted">"No object retains a large share of the heap."</p> }.into_any();
    }
    let items = suspects
        .into_iter()
        .map(|s| view! { <li class="suspect">{s.description} " " <span class="muted">{format!("({})", format_percent(s.retained_share))}</span></li> })
        .collect_view();
    view! { <ul class="suspects">{items}</ul> }.into_any()
}

#[component]
fn ReportView(page: ReportPage) -> impl IntoView {
    let description = page.report.verdict_line();
    let ReportPage { report, chart_svg, notes_html, og_image, public } = page;
    let may_operate = can_operate();
    let limit = report.limit_bytes.map(format_bytes).unwrap_or_else(|| "no limit".into());
    let verdict_word = report.leak.as_ref().map(|l| l.verdict.clone()).unwrap_or_else(|| "none".into());
    let slug = report.slug.clone();
    let actions = (!public).then(|| {
        let link = report.public_token.clone().map(|t| view! { <span id="public-link">" · public link: " <a href=format!("/r/{t}")>{format!("/r/{t}")}</a></span> });
        let shared = report.public_token.is_some();
        let share_action = with_csrf(format!("/reports/{slug}/{}", if shared { "unshare" } else { "share" }));
        let share = move || {
            may_operate().then(|| {
                let (id, label) = if shared { ("unshare", "Stop sharing") } else { ("share", "Make public link") };
                view! { <form method="post" action=share_action.clone() class="inline"><button id=id class="link">{label}</button></form> }
            })
        };
        view! {
            <nav class="report-actions">
                <a href=format!("/reports/{slug}/report.md") id="export-md" rel="external">"Export Markdown"</a>
                " · " <a href="/reports">"All reports"</a>
                {link}
                " " {share}
            </nav>
        }
    });
    let events = if report.events.is_empty() {
        view! { <p class="muted">"No container events in this window."</p> }.into_any()
    } else {
        let ooms = report.events.iter().filter(|e| e.is_oom_kill()).count();
        let rows = report
            .events
            .iter()
            .map(|e| view! { <tr data-action=e.action.clone()><td><LocalTime ms=e.time_ms/></td><td>{e.label.clone()}</td></tr> })
            .collect_view();
        view! {
            <p>{format!("{ooms} OOM kill{}.", if ooms == 1 { "" } else { "s" })}</p>
            <table class="grid" id="report-events"><thead><tr><th>"When"</th><th>"What"</th></tr></thead><tbody>{rows}</tbody></table>
        }
        .into_any()
    };
    let dumps = (!report.dumps.is_empty()).then(|| {
        let items = report
            .dumps
            .clone()
            .into_iter()
            .map(|d| {
                let summary = d
                    .summary
                    .as_ref()
                    .map(|s| format!("{} objects, {} reachable of {} heap", s.objects, format_bytes(s.reachable_bytes), format_bytes(s.heap_bytes)))
                    .unwrap_or_else(|| "analysis was not finished when the report was made".into());
                let link = (!public).then(|| view! { " · " <a href=format!("/dumps/{}", d.info.id)>"analysis"</a> });
                let classes = d
                    .top_classes
                    .into_iter()
                    .map(|c| view! {
                        <tr><td class="cls">{c.class}</td><td class="num">{c.instances}</td><td class="num">{format_bytes(c.shallow_bytes)}</td><td class="num">{format_bytes(c.retained_bytes)}</td></tr>
                    })
                    .collect_view();
                view! {
                    <article class="report-dump panel" data-dump=d.info.id.clone()>
                        <h3>"Heap dump " <LocalTime ms=d.info.created_ms/></h3>
                        <p class="muted">{format_bytes(d.info.size_bytes)} " · " {d.info.runtime.clone().unwrap_or_else(|| "java".into())} " · " {summary} {link}</p>
                        <h4>"Leak suspects"</h4>
                        {suspects_view(d.suspects)}
                        <details>
                            <summary>"Classes retaining the most"</summary>
                            <div class="scroll-x"><table class="grid">
                                <thead><tr><th>"Class"</th><th class="num">"Instances"</th><th class="num">"Shallow"</th><th class="num">"Retained"</th></tr></thead>
                                <tbody>{classes}</tbody>
                            </table></div>
                        </details>
                    </article>
                }
            })
            .collect_view();
        view! { <section id="report-dumps"><h2>"Heap dumps"</h2>{items}</section> }
    });
    let diff = report.diff.clone().map(|diff| {
        let grown = diff.suspects.into_iter().map(|s| view! { <li>{s.description} " " <b>{format_signed_bytes(s.retained_bytes_delta)}</b></li> }).collect_view();
        let rows = diff
            .classes
            .into_iter()
            .map(|c| view! {
                <tr><td class="cls">{c.class}</td><td class="num">{format!("{:+}", c.instances_delta)}</td><td class="num">{format_signed_bytes(c.shallow_bytes_delta)}</td><td class="num">{format_signed_bytes(c.retained_bytes_delta)}</td></tr>
            })
            .collect_view();
        view! {
            <section id="report-diff" class="panel">
                <h2>"What grew between the dumps"</h2>
                <p>"Heap " {format_bytes(diff.before.heap_bytes)} " → " {format_bytes(diff.after.heap_bytes)} " (" {format_signed_bytes(diff.heap_bytes_delta)} ") between "
                    <LocalTime ms=diff.before.timestamp_ms/> " and " <LocalTime ms=diff.after.timestamp_ms/> "."</p>
                <ul>{grown}</ul>
                <div class="scroll-x"><table class="grid">
                    <thead><tr><th>"Class"</th><th class="num">"Instances"</th><th class="num">"Shallow"</th><th class="num">"Retained"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table></div>
            </section>
        }
    });
    let notes = (!notes_html.trim().is_empty()).then(|| view! {
        // Rendered from Markdown and sanitised (ammonia) by the server.
        <section id="report-notes" class="panel"><h2>"Notes"</h2><div class="notes" inner_html=notes_html></div></section>
    });
    let by = (!public && !report.created_by.is_empty()).then(|| format!(" by {}", report.created_by));
    view! {
        <Title text=report.title.clone()/>
        <Meta property="og:type" content="article"/>
        <Meta property="og:title" content=report.title.clone()/>
        <Meta property="og:description" content=description.clone()/>
        <Meta property="og:image" content=og_image/>
        <Meta name="twitter:card" content="summary_large_image"/>
        <Meta name="robots" content="noindex"/>
        <article class="report" data-report=report.id.clone()>
            <h1 id="report-title">{report.title.clone()}</h1>
            <p class="muted">
                "Container " <b>{report.container_name.clone()}</b> " (" {report.image.clone()} ")"
                {report.service.clone().map(|s| view! { " · service " <b>{s}</b> })}
                {report.host.clone().map(|h| view! { " · host " <b>{h}</b> })}
                " · limit " {limit} " · " <LocalTime ms=report.from_ms/> " to " <LocalTime ms=report.to_ms/>
                " · made " <LocalTime ms=report.created_ms/> {by}
            </p>
            {actions}
            <p id="report-verdict" data-verdict=verdict_word><b>"Verdict: "</b> {description}</p>
            // The server's own plotters drawing (the same code as every chart).
            <figure class="chart" id="report-chart" inner_html=chart_svg></figure>
            <section class="panel"><h2>"Events"</h2>{events}</section>
            {dumps}
            {diff}
            {notes}
        </article>
    }
}
