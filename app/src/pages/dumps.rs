//! `/dumps`, `/dumps/<id>` and `/dumps/<a>/diff/<b>`: the dump history and
//! what the server found in each dump.

use leakscope_model::analysis::{Analysis, HeapDiff};
use leakscope_model::dumps::{DumpFilter, DumpInfo};
use leakscope_model::{format_bytes, format_percent};
use leptos::prelude::*;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::server_fns::{get_diff, get_dump, list_dumps, DumpPage};

pub(crate) fn utc(ms: i64) -> String {
    leakscope_model::format_timestamp(ms, None)
}

fn state_badge(d: &DumpInfo) -> impl IntoView {
    let state = d.analysis_state.as_str();
    let class = match state {
        "done" => "badge ok",
        "failed" => "badge danger",
        _ => "badge warn",
    };
    let label = match state {
        "done" => "analysed",
        "failed" => "analysis failed",
        "running" => "analysing",
        _ => "queued",
    };
    let percent = d.analysis_progress.as_ref().map(|p| format!(" {} %", p.percent));
    view! { <span class=class>{label}{percent}</span> }
}

#[component]
pub fn DumpsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.read();
        DumpFilter { service: q.get("service"), container: q.get("container"), runtime: q.get("runtime") }.cleaned()
    });
    let dumps = Resource::new(move || filter.get(), |f| list_dumps(f, None));
    view! {
        <Title text="Heap dumps"/>
        <section class="container-head">
            <div>
                <h1>"Heap dumps"</h1>
                <p class="muted">"Grouped by compose service (or image), so history survives container re-creation. Dumps hold secrets: downloads are never cached."</p>
            </div>
            <form class="upload" method="post" action=crate::components::with_csrf("/dumps/upload".to_string()) enctype="multipart/form-data">
                <input type="text" name="service" placeholder="service (optional)"/>
                <input type="file" name="file" accept=".hprof,.heapsnapshot,.pyheap,.memmap,.pprof,.pb,.core,.gz" required/>
                <button type="submit">"Upload dump"</button>
            </form>
        </section>
        <form class="filters" method="get" action="/dumps">
            <input type="text" name="service" placeholder="service" prop:value=move || filter.get().service.unwrap_or_default()/>
            <input type="text" name="container" placeholder="container" prop:value=move || filter.get().container.unwrap_or_default()/>
            <input type="text" name="runtime" placeholder="runtime (java 17)" prop:value=move || filter.get().runtime.unwrap_or_default()/>
            <button type="submit">"Filter"</button>
            <a href="/dumps">"clear"</a>
        </form>
        <Suspense fallback=|| view! { <p class="muted">"Loading dumps…"</p> }>
            {move || dumps.get().map(|r| match r {
                Ok(list) => view! { <DumpGroups list/> }.into_any(),
                Err(e) => view! { <div class="banner error">"Cannot list dumps: " {e.to_string()}</div> }.into_any(),
            })}
        </Suspense>
    }
}

/// Dumps grouped by service, newest first, with links; shared by `/dumps` and the container page.
#[component]
pub fn DumpGroups(list: Vec<DumpInfo>, #[prop(optional)] empty_text: Option<&'static str>) -> impl IntoView {
    if list.is_empty() {
        let text = empty_text.unwrap_or("No heap dumps yet. Upload one above, or POST it to /api/v1/dumps.");
        return view! { <p class="empty">{text}</p> }.into_any();
    }
    let mut groups: Vec<(String, Vec<DumpInfo>)> = Vec::new();
    for d in list {
        match groups.iter_mut().find(|(s, _)| *s == d.service) {
            Some((_, v)) => v.push(d),
            None => groups.push((d.service.clone(), vec![d])),
        }
    }
    let base = crate::components::host_prefix();
    groups
        .into_iter()
        .map(|(service, dumps)| {
            let rows = dumps
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    // Newest first: the next row is the previous dump of this service.
                    let previous = dumps.get(i + 1).map(|p| format!("{base}/dumps/{}/diff/{}", p.id, d.id));
                    let href = format!("{base}/dumps/{}", d.id);
                    let download = format!("{base}/dumps/{}/download", d.id);
                    let delete = format!("{base}/dumps/{}/delete", d.id);
                    view! {
                        <tr data-dump=d.id.clone()>
                            <td><a href=href.clone()>{utc(d.created_ms)}</a></td>
                            <td class="wrap">{d.file_name.clone()}</td>
                            <td class="wrap">{d.container_name.clone().unwrap_or_default()}</td>
                            <td class="num">{format_bytes(d.size_bytes)}</td>
                            <td>{d.runtime.clone().unwrap_or_else(|| "java".into())}{d.pid.map(|p| format!(" · pid {p}"))}</td>
                            <td class="wrap trigger">{d.trigger.clone()}{d.requested_by.clone().map(|b| format!(" ({b})"))}</td>
                            <td>{state_badge(&d)}</td>
                            <td class="actions">
                                <a href=href>"analysis"</a>
                                {previous.map(|p| view! { " · " <a href=p>"diff vs previous"</a> })}
                                " · " <a href=download>"download"</a>
                                <form method="post" action=crate::components::with_csrf(delete) class="inline">
                                    <button type="submit" class="link danger">"delete"</button>
                                </form>
                            </td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <h2 class="group">{service}</h2>
                <table class="grid dumps">
                    <thead><tr><th>"Captured"</th><th>"File"</th><th>"Container"</th><th class="num">"Size"</th><th>"Runtime"</th><th>"Trigger"</th><th>"Analysis"</th><th></th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }
        })
        .collect_view()
        .into_any()
}

#[component]
pub fn DumpPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let node = Memo::new(move |_| query.read().get("node"));
    let host = crate::components::provide_host(params.read_untracked().get("host"));
    let page = Resource::new(move || (id.get(), node.get()), move |(id, node)| get_dump(id, node, host.clone()));
    view! {
        <Title text="Heap dump analysis"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                // Sort and filter links change only the query: render again with them.
                query.track();
                page.get().map(|r| match r {
                Ok(Some(p)) => view! { <DumpView page=p query/> }.into_any(),
                Ok(None) => view! { <section class="empty"><h1>"No such dump"</h1><p><a href="/dumps">"All dumps"</a></p></section> }.into_any(),
                Err(e) => view! { <div class="banner error">{e.to_string()}</div> }.into_any(),
                })
            }}
        </Suspense>
    }
}

#[component]
fn DumpView(page: DumpPage, query: Memo<leptos_router::params::ParamsMap>) -> impl IntoView {
    let info = page.info;
    let head = view! {
        <section class="container-head">
            <div>
                <h1>{info.file_name.clone()}</h1>
                <p class="muted">
                    {info.service.clone()} " · " {utc(info.created_ms)} " · " {format_bytes(info.size_bytes)}
                    " (" {format_bytes(info.stored_bytes)} " stored) · sha256 " <code>{info.sha256.chars().take(16).collect::<String>()}</code>
                </p>
                {info.runtime.clone().map(|runtime| view! {
                    <p class="muted" id="dump-capture">
                        {runtime} {info.pid.map(|p| format!(" · pid {p}"))}
                        {info.container_name.clone().map(|c| format!(" · container {c}"))}
                        {info.host.clone().map(|h| format!(" on host {h}"))}
                        {info.pause_ms.map(|ms| format!(" · the process was paused {ms} ms"))}
                        {info.capture_ms.map(|ms| format!(" · captured in {:.1} s", ms as f64 / 1000.0))}
                        {info.requested_by.clone().map(|b| format!(" · asked by {b}"))}
                    </p>
                })}
            </div>
            <p class="actions">
                <a href=format!("{}/dumps/{}/download", crate::components::host_prefix(), info.id)>{download_label(&info.format)}</a>
                {opens_in(&info.format)} " · "
                <a href=format!("{}/api/v1/dumps/{}/analysis", crate::components::host_prefix(), info.id)>"JSON"</a>
                {(info.container_name.is_some() && crate::components::on_host().is_none()).then(|| view! {
                    " · " <a href=format!("/reports/new?dumps={}", info.id) rel="external" id="report-from-dump">"Create report"</a>
                })}
            </p>
        </section>
        {info.outside_heap_note().map(|note| view! { <div class="banner" id="outside-heap">{note}</div> })}
    };
    let body = match (page.analysis, info.analysis_state.as_str()) {
        (Some(analysis), _) => {
            let node_error = page.node_error;
            let flame = page.flame;
            view! { <AnalysisView analysis siblings=page.siblings id=info.id.clone() created_ms=info.created_ms query node_error flame/> }.into_any()
        }
        (None, "failed") => view! {
            <div class="banner error">"The analysis failed: " {info.analysis_error.clone().unwrap_or_default()}
            ". The dump itself is kept; download it to inspect it elsewhere."</div>
        }
        .into_any(),
        (None, state) => {
            let (percent, phase) = match (&info.analysis_progress, state) {
                (Some(p), _) => (p.percent, p.phase.clone()),
                (None, "running") => (0, "starting".to_string()),
                _ => (0, "waiting for the analysis before it to finish".to_string()),
            };
            view! {
                <Meta http_equiv="refresh" content="2"/>
                <div class="banner" id="analysis-progress">
                    "Analysing this dump: " <strong>{format!("{percent} %")}</strong> " — " {phase} ". The page refreshes by itself."
                    <progress max="100" value=percent.to_string()>{format!("{percent} %")}</progress>
                </div>
            }
            .into_any()
        }
    };
    view! { {head} {body} }
}

/// Rows a table shows before its "show all" link.
const TOP_ROWS: usize = 25;

/// Percent-encodes a query value (class filters hold `$`, `[` and spaces).
fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[component]
fn AnalysisView(
    analysis: Analysis,
    siblings: Vec<DumpInfo>,
    id: String,
    created_ms: i64,
    query: Memo<leptos_router::params::ParamsMap>,
    node_error: Option<String>,
    flame: Vec<leakscope_model::flame::FlameFrame>,
) -> impl IntoView {
    let s = analysis.summary.clone();
    let flame = (!flame.is_empty()).then(|| view! { <FlameGraph frames=flame dump_id=id.clone() total=s.reachable_bytes/> });
    let functions = (!analysis.profile_functions.is_empty()).then(|| view! { <ProfileFunctions functions=analysis.profile_functions.clone()/> });
    let w = words(&s.format);
    let total = s.reachable_bytes.max(1);
    let analysis_for_tree = analysis.clone();
    let suspects = analysis
        .suspects
        .iter()
        .map(|sus| {
            let path = sus
                .path
                .iter()
                .map(|step| {
                    view! {
                        <li>
                            <span class="cls">{step.class.clone()}</span>
                            {step.root_kind.clone().filter(|k| !k.is_empty()).map(|k| view! { <span class="badge">{k}</span> })}
                            {step.field.clone().map(|f| view! { <span class="field">" ." {f}</span> })}
                        </li>
                    }
                })
                .collect_view();
            view! {
                <div class="suspect">
                    <p class="suspect-text">{sus.description.clone()}</p>
                    <details>
                        <summary>"Path from a GC root"</summary>
                        <ol class="path">{path}</ol>
                    </details>
                </div>
            }
        })
        .collect_view();
    let diff_links = siblings
        .iter()
        .take(5)
        .map(|o| {
            // The earlier dump goes first, so the diff reads as growth.
            let (before, after) = if o.created_ms <= created_ms { (o.id.clone(), id.clone()) } else { (id.clone(), o.id.clone()) };
            view! { <li><a href=format!("{}/dumps/{before}/diff/{after}", crate::components::host_prefix())>{format!("diff with {}", utc(o.created_ms))}</a></li> }
        })
        .collect_view();

    // tracemalloc's view, for Python processes where it was already tracing.
    let sites = (!analysis.allocation_sites.is_empty()).then(|| {
        let rows = analysis
            .allocation_sites
            .iter()
            .take(TOP_ROWS)
            .map(|s| view! { <tr><td class="cls">{format!("{}:{}", s.file, s.line)}</td><td class="num">{format_bytes(s.size_bytes)}</td><td class="num">{s.blocks}</td></tr> })
            .collect_view();
        view! {
            <section class="panel" id="allocation-sites">
                <h2>{w.sites}</h2>
                <p class="muted">{w.sites_note}</p>
                <table class="grid">
                    <thead><tr><th>"Line"</th><th class="num">"Size"</th><th class="num">"Blocks"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </section>
        }
    });

    // Histogram: filter (?q=) and sort (?sort=) from the URL.
    let filter = query.read_untracked().get("q").unwrap_or_default();
    let sort = query.read_untracked().get("sort").unwrap_or_else(|| "retained".into());
    let needle = filter.to_lowercase();
    let mut rows: Vec<_> = analysis.histogram.iter().filter(|e| needle.is_empty() || e.class.to_lowercase().contains(&needle)).cloned().collect();
    match sort.as_str() {
        "shallow" => rows.sort_by(|a, b| b.shallow_bytes.cmp(&a.shallow_bytes)),
        "instances" => rows.sort_by(|a, b| b.instances.cmp(&a.instances)),
        "class" => rows.sort_by(|a, b| a.class.cmp(&b.class)),
        _ => {}
    }
    // The top rows first; `?rows=all` lists every class (up to 5 000) for whoever wants to read on.
    let all_rows = query.read_untracked().get("rows").as_deref() == Some("all");
    let matching = rows.len();
    let shown = matching.min(if all_rows { 5_000 } else { TOP_ROWS });
    let more_rows = (shown < matching).then(|| {
        let href = format!("?sort={sort}&q={}&rows=all#histogram", encode_query(&filter));
        view! { <p class="more"><a href=href id="histogram-all">{format!("Show all {matching} classes")}</a></p> }
    });
    let histogram = rows
        .into_iter()
        .take(shown)
        .map(|e| {
            view! {
                <tr>
                    <td class="cls">{e.class}</td>
                    <td class="num">{e.instances}</td>
                    <td class="num">{format_bytes(e.shallow_bytes)}</td>
                    <td class="num">{format_bytes(e.retained_bytes)}</td>
                    <td class="num">{format_percent(e.retained_bytes as f64 / total as f64)}</td>
                </tr>
            }
        })
        .collect_view();
    let rows_param = if all_rows { "&rows=all" } else { "" };
    let sort_link = {
        let filter = encode_query(&filter);
        move |key: &str, label: &'static str| view! { <a href=format!("?sort={key}&q={filter}{rows_param}#histogram")>{label}</a> }
    };
    let all_objects = query.read_untracked().get("objects").as_deref() == Some("all");
    let biggest = analysis.dominators.len().min(if all_objects { 100 } else { TOP_ROWS });
    let more_objects = (biggest < analysis.dominators.len().min(100)).then(|| {
        view! { <p class="more"><a href="?objects=all#biggest" id="objects-all">{format!("Show the biggest {}", analysis.dominators.len().min(100))}</a></p> }
    });
    let dominators = analysis
        .dominators
        .iter()
        .take(biggest)
        .map(|d| {
            let indent = format!("padding-left: {}px", (d.depth.saturating_sub(1).min(12)) * 14);
            view! {
                <tr>
                    <td class="cls" style=indent>{d.class.clone()} " " <code class="muted">{d.object_id.clone()}</code></td>
                    <td class="num">{format_bytes(d.shallow_bytes)}</td>
                    <td class="num">{format_bytes(d.retained_bytes)}</td>
                    <td class="num">{format_percent(d.retained_bytes as f64 / total as f64)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="summary">
            <div class="stat"><span class="stat-value">{format_bytes(s.reachable_bytes)}</span><span class="stat-label">{w.total}</span></div>
            <div class="stat"><span class="stat-value">{s.objects}</span><span class="stat-label">"objects"</span></div>
            <div class="stat"><span class="stat-value">{s.classes}</span><span class="stat-label">"classes"</span></div>
            <div class="stat"><span class="stat-value">{s.gc_roots}</span><span class="stat-label">"GC roots"</span></div>
            <div class="stat"><span class="stat-value">{format!("{} B", s.id_size)}</span><span class="stat-label">"ids"</span></div>
            <div class="stat"><span class="stat-value">{utc(s.timestamp_ms)}</span><span class="stat-label">"dumped at"</span></div>
        </section>
        <section class="panel">
            <h2>"Leak suspects"</h2>
            {if analysis.suspects.is_empty() { Some(view! { <p class="muted">{if s.format == "memmap" {
                "A memory map has no suspects of its own: compare two snapshots of the process to see which kind of memory grows."
            } else if s.format == "core" {
                "A core dump has no suspects of its own. Above is its memory map, read while the process was stopped; compare two \
                 captures of the process to see which kind of memory grows, and open the file in gdb (`gdb /path/to/program FILE`, \
                 with the program and libraries of the image) for threads, backtraces and the memory itself."
            } else {
                "Nothing retains 10 % of the heap on its own."
            }}</p> }) } else { None }}
            {suspects}
            {(!siblings.is_empty()).then(|| view! { <h3>"Compare"</h3><ul>{diff_links}</ul> })}
        </section>
        {flame}
        <DominatorTree analysis=analysis_for_tree dump_id=id.clone() node=query.read_untracked().get("node") total node_error/>
        {functions}
        {sites}
        <section class="panel" id="histogram">
            <h2>{w.histogram}</h2>
            <form method="get" class="filters">
                <input type="text" name="q" placeholder="filter classes" prop:value=filter_value(query)/>
                <input type="hidden" name="sort" prop:value=sort.clone()/>
                <button type="submit">"Filter"</button>
                <span class="muted">{format!("{shown} of {matching} shown")}</span>
            </form>
            <table class="grid">
                <thead><tr>
                    <th>{sort_link("class", w.class)}</th>
                    <th class="num">{sort_link("instances", w.instances)}</th>
                    <th class="num">{sort_link("shallow", w.shallow)}</th>
                    <th class="num">{sort_link("retained", w.retained)}</th>
                    <th class="num">"% of heap"</th>
                </tr></thead>
                <tbody>{histogram}</tbody>
            </table>
            {more_rows}
        </section>
        <section class="panel" id="biggest">
            <h2>{w.biggest}</h2>
            <p class="muted">{w.biggest_note}</p>
            <table class="grid">
                <thead><tr><th>"Object"</th><th class="num">"Shallow"</th><th class="num">"Retained"</th><th class="num">"% of heap"</th></tr></thead>
                <tbody>{dominators}</tbody>
            </table>
            {more_objects}
        </section>
    }
}

/// The dominator tree, one level at a time (`?node=<object id>` expands a node;
/// plain links, so it works without JavaScript), with the selected object's
/// path from a GC root.
#[component]
fn DominatorTree(analysis: Analysis, dump_id: String, node: Option<String>, total: u64, node_error: Option<String>) -> impl IntoView {
    let percent = move |b: u64| format_percent(b as f64 / total as f64);
    let ancestors: Vec<(String, String)> =
        node.as_deref().map(|n| analysis.tree_ancestors(n).iter().map(|a| (a.object_id.clone(), a.class.clone())).collect()).unwrap_or_default();
    let crumbs = ancestors
        .iter()
        .map(|(id, class)| view! { " › " <a href=format!("?node={id}#tree")>{class.clone()}</a> })
        .collect_view();
    let children = analysis
        .tree_children(node.as_deref())
        .into_iter()
        .map(|c| {
            let expand = (c.children > 0).then(|| view! { <a href=format!("?node={}#tree", c.object_id) class="expand">{format!("▸ {} children", c.children)}</a> });
            view! {
                <tr data-object=c.object_id.clone()>
                    <td class="cls">{c.class.clone()} " " <code class="muted">{c.object_id.clone()}</code> " " {expand}</td>
                    <td class="num">{format_bytes(c.shallow_bytes)}</td>
                    <td class="num">{format_bytes(c.retained_bytes)}</td>
                    <td class="num">{percent(c.retained_bytes)}</td>
                </tr>
            }
        })
        .collect_view();
    let path = node.as_deref().map(|n| analysis.path_to(n)).unwrap_or_default();
    let path_view = (!path.is_empty()).then(|| {
        let steps = path
            .iter()
            .map(|p| {
                let root = p.root_kind.clone().map(|k| format!(" (GC root: {k})"));
                let field = p.field.clone().map(|f| view! { " ." <b>{f}</b> " →" });
                view! { <li>{p.class.clone()} " " <code class="muted">{p.object_id.clone()}</code> {root} {field}</li> }
            })
            .collect_view();
        view! { <h3>"Path from a GC root"</h3><ol class="path" id="gc-path">{steps}</ol> }
    });
    let empty = analysis.tree.is_empty().then(|| view! { <p class="muted">"Analysed by an older version: analyse again to browse the tree."</p> });
    let treemap = analysis.tree_lists_children_of(node.as_deref()).then(|| {
        view! { <Treemap analysis=analysis.clone() dump_id=dump_id.clone() node=node.clone() total/> }
    });
    view! {
        <section class="panel" id="tree">
            <h2>"Dominator tree"</h2>
            <p class="muted">"What keeps what alive: each object retains everything listed under it. "
                <a href="?#tree">"top"</a> {crumbs}</p>
            {empty}
            {node_error.map(|e| view! { <div class="banner error" id="object-error">{e}</div> })}
            {treemap}
            <form method="get" action="" id="object-lookup" class="lookup">
                <label>"Any object by id: " <input name="node" placeholder="0x7f3a12c8" value=node.clone().unwrap_or_default() size="20"/></label>
                " " <button type="submit">"Show"</button>
                <span class="muted">" (objects outside the stored tree take one pass over the dump)"</span>
            </form>
            <table class="grid" id="tree-table">
                <thead><tr><th>"Object"</th><th class="num">"Shallow"</th><th class="num">"Retained"</th><th class="num">"% of heap"</th></tr></thead>
                <tbody>{children}</tbody>
            </table>
            {path_view}
        </section>
    }
}

/// A plain link over a box of a picture drawn by the server (a treemap's block,
/// a flame graph's frame) into the tree; `place` is left, top, width, height as shares.
fn tree_link(object_id: &str, title: String, place: [f64; 4]) -> impl IntoView {
    let [left, top, width, height] = place.map(|share| share * 100.0);
    let style = format!("left:{left:.3}%;top:{top:.3}%;width:{width:.3}%;height:{height:.3}%");
    view! { <a class="treemap-block" href=format!("?node={object_id}#tree") style=style title=title.clone() aria-label=title data-object=object_id.to_string()></a> }
}

/// A Go heap profile's call tree as a flame graph drawn by the server
/// (`/dumps/<id>/flame.svg`), with a plain link over every box into the tree
/// (placed in percent from the same layout: no script needed).
#[component]
fn FlameGraph(frames: Vec<leakscope_model::flame::FlameFrame>, dump_id: String, total: u64) -> impl IntoView {
    use leakscope_model::flame::{ROW, WIDTH};
    let height = frames.iter().map(|f| f.depth + 1).max().unwrap_or(1) * ROW;
    let base = crate::components::host_prefix();
    let src = |theme: &str| format!("{base}/dumps/{dump_id}/flame.svg?theme={theme}");
    let links = frames
        .iter()
        .map(|f| {
            let title = format!("{} · {} in use under it ({})", f.name, format_bytes(f.bytes), format_percent(f.bytes as f64 / total.max(1) as f64));
            let (top, tall) = ((f.depth * ROW) as f64 / height as f64, ROW as f64 / height as f64);
            tree_link(&f.object_id, title, [f.start, top, f.width, tall])
        })
        .collect_view();
    view! {
        <section class="panel" id="flame">
            <h2>"Flame graph (in-use memory by call path)"</h2>
            <p class="muted">"Each box is a function on a call path, as wide as the in-use memory allocated under it; callers above their callees. Click one to open it in the call tree."</p>
            <div class="treemap flame">
                <picture>
                    <source media="(prefers-color-scheme: dark)" srcset=src("dark")/>
                    <img src=src("light") width=WIDTH.to_string() height=height.to_string() alt="Flame graph of the heap profile's call tree"/>
                </picture>
                {links}
            </div>
        </section>
    }
}

/// A Go heap profile per function: in use now and allocated since the program
/// started (what `go tool pprof -top -sample_index=…` lists for each index).
#[component]
fn ProfileFunctions(functions: Vec<leakscope_model::analysis::ProfileFunction>) -> impl IntoView {
    let shown = functions.len().min(TOP_ROWS * 2);
    let rows = functions
        .iter()
        .take(shown)
        .map(|f| {
            view! {
                <tr>
                    <td class="cls">{f.function.clone()}</td>
                    <td class="num">{format_bytes(f.inuse_space_flat)}</td>
                    <td class="num">{format_bytes(f.inuse_space_cum)}</td>
                    <td class="num">{f.inuse_objects_flat}</td>
                    <td class="num">{format_bytes(f.alloc_space_flat)}</td>
                    <td class="num">{format_bytes(f.alloc_space_cum)}</td>
                    <td class="num">{f.alloc_objects_flat}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel" id="profile-functions">
            <h2>"In use and allocated, by function"</h2>
            <p class="muted">
                "In use: sampled memory still live at the profile's last GC. Allocated: everything allocated since the program started, freed or not — \
                 a function that allocates far more than it keeps churns the GC; one whose in-use share keeps growing between profiles leaks. "
                {format!("{shown} of {} functions.", functions.len())}
            </p>
            <table class="grid">
                <thead><tr>
                    <th>"Function"</th><th class="num">"In use (flat)"</th><th class="num">"In use (cum)"</th><th class="num">"Objects in use"</th>
                    <th class="num">"Allocated (flat)"</th><th class="num">"Allocated (cum)"</th><th class="num">"Objects allocated"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

/// The tree under a node as a picture: a treemap drawn by the server
/// (`/dumps/<id>/treemap.svg`), with a plain link over every block (placed in
/// percent from the same layout, so it scales with the image and needs no script).
#[component]
fn Treemap(analysis: Analysis, dump_id: String, node: Option<String>, total: u64) -> impl IntoView {
    let (w, h) = leakscope_model::treemap::SIZE;
    let blocks = leakscope_model::treemap::layout(&analysis, node.as_deref(), w as f64, h as f64);
    if blocks.is_empty() {
        return None;
    }
    let query = node.as_deref().map(|n| format!("node={n}&")).unwrap_or_default();
    let base = crate::components::host_prefix();
    let src = |theme: &str| format!("{base}/dumps/{dump_id}/treemap.svg?{query}theme={theme}");
    let links = blocks
        .iter()
        .map(|b| {
            let title = format!("{} {} · {} retained ({})", b.class, b.object_id, format_bytes(b.retained_bytes), format_percent(b.retained_bytes as f64 / total as f64));
            let (w, h) = (w as f64, h as f64);
            tree_link(&b.object_id, title, [b.x / w, b.y / h, b.w / w, b.h / h])
        })
        .collect_view();
    Some(view! {
        <div class="treemap" id="treemap">
            <picture>
                <source media="(prefers-color-scheme: dark)" srcset=src("dark")/>
                <img src=src("light") width=w.to_string() height=h.to_string() alt="Treemap of the dominator tree: each block's area is what it retains"/>
            </picture>
            {links}
        </div>
        <p class="muted">"Each block's area is the memory it keeps alive; click one to open it."</p>
    })
}

fn filter_value(query: Memo<leptos_router::params::ParamsMap>) -> String {
    query.read_untracked().get("q").unwrap_or_default()
}

#[component]
pub fn DiffPage() -> impl IntoView {
    let params = use_params_map();
    let ids = Memo::new(move |_| {
        let p = params.read();
        (p.get("a").unwrap_or_default(), p.get("b").unwrap_or_default())
    });
    let host = crate::components::provide_host(params.read_untracked().get("host"));
    let diff = Resource::new(move || ids.get(), move |(a, b)| get_diff(a, b, host.clone()));
    view! {
        <Title text="Heap dump diff"/>
        <Suspense fallback=|| view! { <p class="muted">"Comparing…"</p> }>
            {move || diff.get().map(|r| match r {
                Ok(d) => {
                    let (a, b) = ids.get();
                    view! {
                        {crate::components::on_host().is_none().then(|| view! {
                            <p class="actions"><a href=format!("/reports/new?dumps={a},{b}") rel="external" id="report-from-diff">"Create report with both dumps"</a></p>
                        })}
                        <DiffView diff=d/>
                    }.into_any()
                }
                Err(e) => view! { <div class="banner error">"Cannot compare: " {e.to_string()}</div> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn DiffView(diff: HeapDiff) -> impl IntoView {
    let python = diff.after.format == "python";
    let w = words(&diff.after.format);
    let findings = (!diff.findings.is_empty()).then(|| {
        let items = diff.findings.iter().map(|f| view! { <li>{f.clone()}</li> }).collect_view();
        view! { <section class="panel" id="diff-findings"><h2>"In plain words"</h2><ul>{items}</ul></section> }
    });
    let rows = diff
        .classes
        .iter()
        .take(100)
        .map(|c| {
            let class = if c.shallow_bytes_delta > 0 { "grew" } else { "" };
            view! {
                <tr class=class>
                    <td class="cls">{c.class.clone()}</td>
                    <td class="num">{format!("{:+}", c.instances_delta)}</td>
                    <td class="num">{c.instances_after}</td>
                    <td class="num">{signed_bytes(c.shallow_bytes_delta)}</td>
                    <td class="num">{signed_bytes(c.retained_bytes_delta)}</td>
                </tr>
            }
        })
        .collect_view();
    // Snapshots of one process: DevTools' Comparison view, object by object.
    let objects = diff.objects.clone().map(|changes| {
        let rows = changes
            .into_iter()
            .take(100)
            .map(|c| {
                let class = if c.bytes_delta > 0 { "grew" } else { "" };
                view! {
                    <tr class=class>
                        <td class="cls">{c.class}</td>
                        <td class="num">{c.new_objects}</td>
                        <td class="num">{c.deleted_objects}</td>
                        <td class="num">{format!("{:+}", c.objects_delta)}</td>
                        <td class="num">{format_bytes(c.new_bytes)}</td>
                        <td class="num">{format_bytes(c.deleted_bytes)}</td>
                        <td class="num">{signed_bytes(c.bytes_delta)}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <section class="panel">
                <h2>"Objects added and freed"</h2>
                <p class="muted">{if python {
                    "These snapshots are of one Python process, so objects are matched by address: every object of the later snapshot that the earlier one did not have is new, every one it lost was freed (an address reused by another type counts as both)."
                } else {
                    "These snapshots were written by one process, so V8's object ids match: every object of the later snapshot that the earlier one did not have is new, every one it lost was freed (Chrome DevTools' Comparison view)."
                }}</p>
                <table class="grid" id="diff-objects">
                    <thead><tr><th>"Constructor"</th><th class="num">"# New"</th><th class="num">"# Deleted"</th><th class="num">"# Delta"</th>
                        <th class="num">"Alloc. size"</th><th class="num">"Freed size"</th><th class="num">"Size delta"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </section>
        }
    });
    let site_rows = diff
        .allocation_sites
        .iter()
        .map(|s| view! { <tr><td class="cls">{format!("{}:{}", s.file, s.line)}</td><td class="num">{format_bytes(s.size_bytes_after)}</td><td class="num">{signed_bytes(s.size_bytes_delta)}</td><td class="num">{s.blocks_delta}</td></tr> })
        .collect_view();
    let sites = (!diff.allocation_sites.is_empty()).then(|| view! {
        <section class="panel">
            <h2>{if diff.after.format == "pprof" { "Allocating lines by growth (in-use memory)" } else { "Allocation sites by growth (tracemalloc)" }}</h2>
            <table class="grid" id="diff-sites">
                <thead><tr><th>"Line"</th><th class="num">"Size now"</th><th class="num">"Δ size"</th><th class="num">"Δ blocks"</th></tr></thead>
                <tbody>{site_rows}</tbody>
            </table>
        </section>
    });
    let suspects = diff
        .suspects
        .iter()
        .map(|s| view! { <li>{s.description.clone()} " — " <strong>{signed_bytes(s.retained_bytes_delta)}</strong> " since the earlier dump"</li> })
        .collect_view();
    view! {
        <section class="container-head">
            <div>
                <h1>"What grew"</h1>
                <p class="muted">{format!("{} → {} ({})", format_bytes(diff.before.heap_bytes), format_bytes(diff.after.heap_bytes), signed_bytes(diff.heap_bytes_delta))}
                    " between " {utc(diff.before.timestamp_ms)} " and " {utc(diff.after.timestamp_ms)}</p>
            </div>
        </section>
        {findings}
        <section class="panel">
            <h2>"Suspects in the later dump"</h2>
            <ul>{suspects}</ul>
        </section>
        {objects}
        {sites}
        <section class="panel">
            <h2>{format!("{} by growth", w.histogram)}</h2>
            <table class="grid" id="diff">
                <thead><tr><th>{w.class}</th><th class="num">{format!("Δ {}", w.instances.to_lowercase())}</th><th class="num">{format!("{} now", w.instances)}</th><th class="num">{format!("Δ {}", w.shallow.to_lowercase())}</th><th class="num">{format!("Δ {}", w.retained.to_lowercase())}</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

fn signed_bytes(delta: i64) -> String {
    let sign = if delta < 0 { "−" } else { "+" };
    format!("{sign}{}", format_bytes(delta.unsigned_abs()))
}

/// How a page names the parts of an analysis, by the dump's format: a memory
/// map has kinds of mappings, a heap profile functions, a heap dump classes.
struct Words {
    histogram: &'static str,
    class: &'static str,
    instances: &'static str,
    shallow: &'static str,
    retained: &'static str,
    total: &'static str,
    biggest: &'static str,
    biggest_note: &'static str,
    sites: &'static str,
    sites_note: &'static str,
}

fn words(format: &str) -> Words {
    match format {
        "memmap" | "core" => Words {
            histogram: "Memory by kind",
            class: "Kind",
            instances: "Mappings",
            shallow: "Resident",
            retained: "Resident (with swap)",
            total: "resident memory",
            biggest: "Biggest mappings",
            biggest_note: "Resident memory of each mapping, largest first (from /proc/<pid>/smaps).",
            sites: "",
            sites_note: "",
        },
        "pprof" => Words {
            histogram: "In-use memory by function (as go tool pprof -top)",
            class: "Function",
            instances: "Objects",
            shallow: "Flat",
            retained: "Cum",
            total: "in-use memory (sampled)",
            biggest: "Call tree (cumulative in-use memory)",
            biggest_note: "Call paths from the program's start, largest first; indentation is depth in the call tree.",
            sites: "Where the live memory was allocated (the profile's allocating lines)",
            sites_note: "The innermost frame of each sampled allocation still in use, as the Go runtime's heap profile records it.",
        },
        _ => Words {
            histogram: "Class histogram",
            class: "Class",
            instances: "Instances",
            shallow: "Shallow",
            retained: "Retained",
            total: "reachable heap",
            biggest: "Biggest objects (dominator tree)",
            biggest_note: "Largest retained sizes first; indentation is depth in the dominator tree.",
            sites: "Where the live memory was allocated (tracemalloc)",
            sites_note: "tracemalloc was already tracing in this process: the lines that allocated the most memory still alive, as it counts them.",
        },
    }
}

/// What the download link says: the file kind a person will get.
pub fn download_label(format: &str) -> &'static str {
    match format {
        "v8" => "Download .heapsnapshot",
        "python" => "Download .pyheap",
        "memmap" => "Download .memmap",
        "pprof" => "Download .pprof",
        "core" => "Download .core",
        _ => "Download .hprof",
    }
}

fn opens_in(format: &str) -> &'static str {
    match format {
        "v8" => " (opens in Chrome DevTools' Memory tab and in memlab)",
        "python" => " (Leakscope's own format: `leakscope analyze FILE` reads it offline)",
        "memmap" => " (plain text: the process's smaps, status and counts; `leakscope analyze FILE` reads it offline)",
        "pprof" => " (opens in `go tool pprof`)",
        "core" => " (an ELF core: `gdb /path/to/program FILE`, with the program and its libraries from the image)",
        _ => " (opens in Eclipse MAT or VisualVM)",
    }
}
