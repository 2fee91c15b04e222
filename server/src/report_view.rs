//! A report as Markdown for tickets: a pure function of the frozen report.
//! (Its page is the Leptos app's `pages/reports.rs`.)

use leakscope_model::reports::Report;
use leakscope_model::{format_bytes, format_signed_bytes};

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
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
    md += &format!("**Verdict:** {}\n\n![Memory of {}]({chart_png_url})\n\n", report.verdict_line(), report.container_name);
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
        md += &format!("## What grew\n\nHeap {} → {} ({})\n\n| Class | Instances | Retained |\n|---|---:|---:|\n", format_bytes(diff.before.heap_bytes), format_bytes(diff.after.heap_bytes), format_signed_bytes(diff.heap_bytes_delta));
        for c in diff.classes.iter().take(10) {
            md += &format!("| `{}` | {:+} | {} |\n", c.class, c.instances_delta, format_signed_bytes(c.retained_bytes_delta));
        }
        md += "\n";
    }
    if !report.notes.trim().is_empty() {
        md += &format!("## Notes\n\n{}\n", report.notes.trim());
    }
    md
}
