//! A report as HTML (server-rendered, no script: it must read with JavaScript
//! off and arrive fast) and as Markdown for tickets. Pure functions of the
//! frozen report; the handlers in `reports_api.rs` fetch and serve.

use leakscope_model::analysis::Suspect;
use leakscope_model::reports::{Report, ReportListItem};
use leakscope_model::{format_bytes, format_duration, format_percent};

use crate::web::html::esc;

/// Where the page is shown: to the team (links to dumps, share controls) or
/// to anyone holding the public link (nothing beyond the report itself).
pub enum Audience<'a> {
    Team { can_operate: bool, csrf: Option<&'a str> },
    Public,
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

fn signed(bytes: i64) -> String {
    let sign = if bytes < 0 { "−" } else { "+" };
    format!("{sign}{}", format_bytes(bytes.unsigned_abs()))
}

/// Markdown to HTML with raw HTML shown as text and only http(s)/mailto/relative links kept:
/// notes are written by people but read by everyone who opens the link.
pub fn markdown_html(text: &str) -> String {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
    let safe_url = |url: &CowStr| {
        let lower = url.trim().to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:") || lower.starts_with('/') || lower.starts_with('#')
    };
    let events = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) if !safe_url(&dest_url) => {
            Event::Start(Tag::Link { link_type, dest_url: CowStr::from(""), title, id })
        }
        // Images would load from anywhere on the reader's machine: shown as links instead.
        Event::Start(Tag::Image { dest_url, title, id, .. }) => Event::Start(Tag::Link {
            link_type: pulldown_cmark::LinkType::Inline,
            dest_url: if safe_url(&dest_url) { dest_url } else { CowStr::from("") },
            title,
            id,
        }),
        Event::End(pulldown_cmark::TagEnd::Image) => Event::End(pulldown_cmark::TagEnd::Link),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

fn verdict_line(report: &Report) -> String {
    match &report.leak {
        Some(l) => {
            let slope = format!("{}/h", signed(l.slope_bytes_per_hour as i64));
            let left = l.time_to_limit_seconds.map(|s| format!(", limit in {}", format_duration(s))).unwrap_or_default();
            format!("{} — {} ({slope}{left})", l.verdict, l.reason)
        }
        None => "no verdict yet (too little history when the report was made)".into(),
    }
}

fn suspects_html(suspects: &[Suspect]) -> String {
    if suspects.is_empty() {
        return "<p class=\"muted\">No object retains a large share of the heap.</p>".into();
    }
    let items: String = suspects
        .iter()
        .map(|s| format!("<li class=\"suspect\">{} <span class=\"muted\">({})</span></li>", esc(&s.description), format_percent(s.retained_share)))
        .collect();
    format!("<ul class=\"suspects\">{items}</ul>")
}

/// The whole page. `chart_svg` is the inline chart; `og_image` an absolute PNG URL for chat previews.
pub fn page(report: &Report, chart_svg: &str, og_image: &str, audience: Audience) -> String {
    let public = matches!(audience, Audience::Public);
    let service = report.service.as_deref().map(|s| format!(" · service <b>{}</b>", esc(s))).unwrap_or_default();
    let limit = report.limit_bytes.map(format_bytes).unwrap_or_else(|| "no limit".into());
    let events: String = report
        .events
        .iter()
        .map(|e| format!("<tr data-action=\"{}\"><td>{}</td><td>{}</td></tr>", esc(&e.action), utc(e.time_ms), esc(&e.label)))
        .collect();
    let events = if events.is_empty() {
        "<p class=\"muted\">No container events in this window.</p>".to_string()
    } else {
        let ooms = report.events.iter().filter(|e| e.is_oom_kill()).count();
        format!("<p>{ooms} OOM kill(s).</p><table class=\"grid\" id=\"report-events\"><tr><th>When</th><th>What</th></tr>{events}</table>")
    };
    let dumps: String = report
        .dumps
        .iter()
        .map(|d| {
            let summary = d
                .summary
                .as_ref()
                .map(|s| format!("{} objects, {} reachable of {} heap", s.objects, format_bytes(s.reachable_bytes), format_bytes(s.heap_bytes)))
                .unwrap_or_else(|| "analysis was not finished when the report was made".into());
            let link = if public { String::new() } else { format!(" · <a href=\"/dumps/{0}\">analysis</a>", esc(&d.info.id)) };
            let classes: String = d
                .top_classes
                .iter()
                .map(|c| format!("<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>", esc(&c.class), c.instances, format_bytes(c.shallow_bytes), format_bytes(c.retained_bytes)))
                .collect();
            format!(
                "<article class=\"report-dump\" data-dump=\"{id}\"><h3>Heap dump {when}</h3><p class=\"muted\">{size} · {runtime} · {summary}{link}</p>\
                 <h4>Leak suspects</h4>{suspects}<details><summary>Classes retaining the most</summary><table class=\"grid\"><tr><th>Class</th><th>Instances</th><th>Shallow</th><th>Retained</th></tr>{classes}</table></details></article>",
                id = esc(&d.info.id),
                when = utc(d.info.created_ms),
                size = format_bytes(d.info.size_bytes),
                runtime = esc(d.info.runtime.as_deref().unwrap_or("java")),
                suspects = suspects_html(&d.suspects),
            )
        })
        .collect();
    let diff = report.diff.as_ref().map(|diff| {
        let rows: String = diff
            .classes
            .iter()
            .map(|c| format!("<tr><td><code>{}</code></td><td class=\"num\">{:+}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>", esc(&c.class), c.instances_delta, signed(c.shallow_bytes_delta), signed(c.retained_bytes_delta)))
            .collect();
        let grown: String = diff
            .suspects
            .iter()
            .map(|s| format!("<li>{} <b>{}</b></li>", esc(&s.description), signed(s.retained_bytes_delta)))
            .collect();
        format!(
            "<section id=\"report-diff\"><h2>What grew between the dumps</h2><p>Heap {} → {} ({}) between {} and {}.</p>\
             <ul>{grown}</ul><table class=\"grid\"><tr><th>Class</th><th>Instances</th><th>Shallow</th><th>Retained</th></tr>{rows}</table></section>",
            format_bytes(diff.before.heap_bytes), format_bytes(diff.after.heap_bytes), signed(diff.heap_bytes_delta), utc(diff.before.timestamp_ms), utc(diff.after.timestamp_ms)
        )
    });
    let notes = (!report.notes.trim().is_empty()).then(|| format!("<section id=\"report-notes\"><h2>Notes</h2>{}</section>", markdown_html(&report.notes)));
    let actions = match audience {
        Audience::Public => String::new(),
        Audience::Team { can_operate, csrf } => {
            let csrf_q = csrf.map(|c| format!("?csrf={}", esc(c))).unwrap_or_default();
            let share = match (&report.public_token, can_operate) {
                (Some(token), true) => format!(
                    "<p id=\"public-link\">Public link: <a href=\"/r/{t}\">/r/{t}</a></p><form method=\"post\" action=\"/reports/{s}/unshare{csrf_q}\"><button id=\"unshare\">Stop sharing</button></form>",
                    t = esc(token), s = esc(&report.slug)
                ),
                (None, true) => format!("<form method=\"post\" action=\"/reports/{}/share{csrf_q}\"><button id=\"share\">Make public link</button></form>", esc(&report.slug)),
                (Some(token), false) => format!("<p id=\"public-link\">Public link: <a href=\"/r/{t}\">/r/{t}</a></p>", t = esc(token)),
                (None, false) => String::new(),
            };
            format!("<nav class=\"report-actions\"><a href=\"/reports/{}/report.md\" id=\"export-md\">Export Markdown</a> · <a href=\"/reports\">All reports</a>{share}</nav>", esc(&report.slug))
        }
    };
    let by = if public { String::new() } else { format!(" by {}", esc(&report.created_by)) };
    let description = esc(&verdict_line(report));
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>{title} · Leakscope</title><link rel=\"stylesheet\" href=\"/pkg/leakscope.css\">\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <meta property=\"og:type\" content=\"article\"><meta property=\"og:title\" content=\"{title}\"><meta property=\"og:description\" content=\"{description}\">\
         <meta property=\"og:image\" content=\"{og}\"><meta name=\"twitter:card\" content=\"summary_large_image\"><meta name=\"robots\" content=\"noindex\"></head>\
         <body><header class=\"topbar\"><a href=\"/\" class=\"brand\">Leakscope</a></header><main class=\"page report\" data-report=\"{id}\">\
         <h1 id=\"report-title\">{title}</h1>\
         <p class=\"muted\">Container <b>{container}</b> ({image}){service} · limit {limit} · {from} to {to} · made {made}{by}</p>{actions}\
         <p id=\"report-verdict\" data-verdict=\"{verdict_word}\"><b>Verdict:</b> {description}</p>\
         <figure class=\"chart\" id=\"report-chart\">{chart_svg}</figure>\
         <section><h2>Events</h2>{events}</section>\
         {dumps_section}{diff}{notes}</main></body></html>",
        title = esc(&report.title),
        og = esc(og_image),
        id = esc(&report.id),
        container = esc(&report.container_name),
        image = esc(&report.image),
        from = utc(report.from_ms),
        to = utc(report.to_ms),
        made = utc(report.created_ms),
        verdict_word = esc(report.leak.as_ref().map(|l| l.verdict.as_str()).unwrap_or("none")),
        dumps_section = if report.dumps.is_empty() { String::new() } else { format!("<section id=\"report-dumps\"><h2>Heap dumps</h2>{dumps}</section>") },
        diff = diff.unwrap_or_default(),
        notes = notes.unwrap_or_default(),
    )
}

/// `/reports`.
pub fn list_page(reports: &[ReportListItem]) -> String {
    let rows: String = reports
        .iter()
        .map(|r| {
            format!(
                "<tr><td><a href=\"/reports/{}\">{}</a></td><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.slug), esc(&r.title), esc(&r.container_name), utc(r.from_ms), utc(r.to_ms), esc(&r.created_by), utc(r.created_ms),
                if r.public { "public link" } else { "" }
            )
        })
        .collect();
    let body = if reports.is_empty() {
        "<p class=\"muted\">No reports yet. Open a container and use <b>Create report</b>.</p>".to_string()
    } else {
        format!("<table class=\"grid\" id=\"reports\"><tr><th>Title</th><th>Container</th><th>Window</th><th>By</th><th>Made</th><th></th></tr>{rows}</table>")
    };
    crate::web::html::plain_page("Reports", &format!("<h1>Leak reports</h1><p><a href=\"/\">Containers</a> · <a href=\"/dumps\">Heap dumps</a></p>{body}")).0
}

/// The report for a ticket: text, tables, and the chart as an image link.
pub fn markdown(report: &Report, chart_png_url: &str) -> String {
    let mut md = format!("# {}\n\n", report.title);
    md += &format!(
        "**Container:** `{}` ({}) · **Window:** {} – {} · **Limit:** {}\n\n",
        report.container_name,
        report.image,
        utc(report.from_ms),
        utc(report.to_ms),
        report.limit_bytes.map(format_bytes).unwrap_or_else(|| "none".into())
    );
    md += &format!("**Verdict:** {}\n\n![Memory of {}]({chart_png_url})\n\n", verdict_line(report), report.container_name);
    if !report.events.is_empty() {
        md += "## Events\n\n| When | What |\n|---|---|\n";
        for e in &report.events {
            md += &format!("| {} | {} |\n", utc(e.time_ms), e.label);
        }
        md += "\n";
    }
    for d in &report.dumps {
        md += &format!("## Heap dump {} ({})\n\n", utc(d.info.created_ms), format_bytes(d.info.size_bytes));
        for s in &d.suspects {
            md += &format!("- {}\n", s.description);
        }
        md += "\n";
    }
    if let Some(diff) = &report.diff {
        md += &format!("## What grew\n\nHeap {} → {} ({})\n\n| Class | Instances | Retained |\n|---|---:|---:|\n", format_bytes(diff.before.heap_bytes), format_bytes(diff.after.heap_bytes), signed(diff.heap_bytes_delta));
        for c in diff.classes.iter().take(10) {
            md += &format!("| `{}` | {:+} | {} |\n", c.class, c.instances_delta, signed(c.retained_bytes_delta));
        }
        md += "\n";
    }
    if !report.notes.trim().is_empty() {
        md += &format!("## Notes\n\n{}\n", report.notes.trim());
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_lose_raw_html_and_dangerous_links() {
        let html = markdown_html("**hi** <script>alert(1)</script> [x](javascript:alert(1)) [ok](https://example.com) ![i](http://evil/p.png)");
        assert!(html.contains("<strong>hi</strong>"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(!html.contains("<img"), "{html}");
    }
}
