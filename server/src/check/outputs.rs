//! What a check writes: the table in the log, JUnit, Markdown (with the
//! run's chart beside it), JSON.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use leakscope_model::MemoryPoint;

use super::{image_service_name, CheckArgs, CheckReport, ServiceResult};

/// The outputs, then the exit code.
pub(super) fn finish(args: &CheckArgs, report: CheckReport) -> ExitCode {
    print_table(&report);
    let mut write_failed = false;
    let mut write = |path: &Option<PathBuf>, text: String| {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                say!("leakscope check: cannot write {}: {e}", path.display());
                write_failed = true;
            }
        }
    };
    write(&args.junit, junit(&report));
    write(&args.markdown, markdown(&report, args.markdown.as_deref()));
    write(&args.json, serde_json::to_string_pretty(&report).unwrap_or_default());
    // An output a pipeline relies on that could not be written is not a pass.
    ExitCode::from(if write_failed && report.exit_code == 0 { 2 } else { report.exit_code })
}

fn print_table(report: &CheckReport) {
    let colour = std::io::stdout().is_terminal();
    let paint = |text: &str, code: &str| if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    if let Some(error) = &report.error {
        show!("{} the check could not judge: {error}", paint("ERROR", "1;33"));
        return;
    }
    show!("{:<28} {:<11} {:>11} {:>13} {:>18}  RESULT", "SERVICE", "VERDICT", "GROWTH", "SLOPE", "PEAK / LIMIT");
    let mut below = Vec::new();
    for s in &report.services {
        let peak = match s.measured.percent_of_limit {
            Some(p) => format!("{} ({p:.0} %)", leakscope_detect::mib(s.measured.peak_bytes)),
            None => leakscope_detect::mib(s.measured.peak_bytes),
        };
        let result = match &s.failure {
            None => paint("PASS", "32"),
            Some(why) => format!("{} {why}", paint("FAIL", "1;31")),
        };
        show!(
            "{:<28} {:<11} {:>11} {:>13} {:>18}  {result}",
            s.service,
            s.verdict.verdict,
            format!("+{}", leakscope_detect::mib(s.measured.growth_bytes)),
            format!("{}/min", leakscope_detect::mib(s.measured.slope_bytes_per_minute)),
            peak
        );
        below.extend(evidence_lines(s).into_iter().map(|line| format!("{}: {line}", s.service)));
        if let Some(url) = &s.report_url {
            below.push(format!("{}: report {url}", s.service));
        }
    }
    for line in below {
        show!("  {line}");
    }
    if let Some(why) = &report.report_error {
        show!("{} the report was not created: {why}", paint("ERROR", "1;33"));
    }
}

/// The dumps' findings in lines: what grew, the suspect, what went wrong.
fn evidence_lines(s: &ServiceResult) -> Vec<String> {
    let Some(dumps) = &s.dumps else { return Vec::new() };
    let mut lines = Vec::new();
    lines.extend(dumps.grown_line());
    lines.extend(dumps.suspect.as_ref().map(|suspect| format!("suspect: {suspect}")));
    if dumps.grown.is_empty() && dumps.start.is_some() && dumps.end.is_some() {
        lines.push("no class grew between the dumps".into());
    }
    lines.extend(dumps.problems.iter().cloned());
    lines
}

/// The report's notes on the server: the check's own findings in Markdown.
pub(super) fn report_notes(s: &ServiceResult, args: &CheckArgs) -> String {
    let mut notes = format!(
        "Measured by `leakscope check`: warm-up {} skipped, judged from {} to {}.\n\n**Result:** {}\n",
        humantime::format_duration(args.warmup),
        leakscope_model::rfc3339_utc(s.judged_from_ms),
        leakscope_model::rfc3339_utc(s.judged_to_ms),
        s.failure.as_deref().unwrap_or("pass")
    );
    for b in &s.breaches {
        notes.push_str(&format!("\n- budget {}: {}", b.budget, b.sentence));
    }
    for line in evidence_lines(s) {
        notes.push_str(&format!("\n- {line}"));
    }
    notes
}

/// XML text and attribute escaping (JUnit files are read by CI servers, not rendered as pages).
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// `<name a="v">content</name>` (`<name a="v"/>` without content), the
/// attribute values escaped; `content` is markup already.
fn element(name: &str, attributes: &[(&str, &str)], content: Option<&str>) -> String {
    let attributes: String = attributes.iter().map(|(key, value)| format!(" {key}=\"{}\"", xml(value))).collect();
    match content {
        Some(content) => format!("<{name}{attributes}>{content}</{name}>"),
        None => format!("<{name}{attributes}/>"),
    }
}

fn junit(report: &CheckReport) -> String {
    let failures = report.services.iter().filter(|s| !s.passed).count();
    let seconds = (report.finished_ms - report.started_ms) as f64 / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let errors = usize::from(report.error.is_some());
    out.push_str(&format!(
        "<testsuites><testsuite name=\"leakscope check\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.1}\">\n",
        report.services.len().max(errors)
    ));
    if let Some(error) = &report.error {
        out.push_str(&format!("<testcase classname=\"leakscope\" name=\"check\"><error message=\"{}\"/></testcase>\n", xml(error)));
    }
    for s in &report.services {
        out.push_str(&format!("<testcase classname=\"leakscope.memory\" name=\"{}\" time=\"{seconds:.1}\">", xml(&s.service)));
        if let Some(url) = &s.report_url {
            out.push_str(&element("properties", &[], Some(&element("property", &[("name", "report"), ("value", url)], None))));
        }
        if let Some(why) = &s.failure {
            let details = format!(
                "verdict: {} ({})\ngrowth after warm-up: {}\nslope: {}/min\npeak: {}\nbudgets exceeded: {}",
                s.verdict.verdict,
                s.verdict.reason,
                leakscope_detect::mib(s.measured.growth_bytes),
                leakscope_detect::mib(s.measured.slope_bytes_per_minute),
                leakscope_detect::mib(s.measured.peak_bytes),
                if s.breaches.is_empty() { "none".to_string() } else { s.breaches.iter().map(|b| b.sentence.clone()).collect::<Vec<_>>().join("; ") }
            ) + &evidence_lines(s).iter().map(|line| format!("\n{line}")).collect::<String>()
                + &s.report_url.as_ref().map(|url| format!("\nreport: {url}")).unwrap_or_default();
            out.push_str(&format!("<failure message=\"{}\" type=\"memory\">{}</failure>", xml(why), xml(&details)));
        }
        let found = evidence_lines(s);
        if s.passed && (!found.is_empty() || s.report_url.is_some()) {
            let text = found.iter().cloned().chain(s.report_url.iter().map(|u| format!("report: {u}"))).collect::<Vec<_>>().join("\n");
            out.push_str(&element("system-out", &[], Some(&xml(&text))));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}

/// Markdown table cells: no pipes or line breaks from the text.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn markdown(report: &CheckReport, path: Option<&Path>) -> String {
    let mut out = String::from("## Leakscope memory check\n\n");
    if let Some(error) = &report.error {
        out.push_str(&format!("**The check could not judge:** {}\n", cell(error)));
        return out;
    }
    if let Some(why) = &report.report_error {
        out.push_str(&format!("**The report was not created:** {}\n\n", cell(why)));
    }
    out.push_str(&format!(
        "{} — warm-up {} s skipped, {} s judged.\n\n| Service | Result | Verdict | Growth after warm-up | Slope | Peak |\n|---|---|---|---|---|---|\n",
        if report.passed { "**Passed**" } else { "**Failed**" },
        report.warmup_seconds,
        report.duration_seconds - report.warmup_seconds
    ));
    for s in &report.services {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}/min | {}{} |\n",
            cell(&s.service),
            if s.passed { "pass".to_string() } else { format!("**fail**: {}", cell(s.failure.as_deref().unwrap_or(""))) },
            cell(&s.verdict.verdict),
            leakscope_detect::mib(s.measured.growth_bytes),
            leakscope_detect::mib(s.measured.slope_bytes_per_minute),
            leakscope_detect::mib(s.measured.peak_bytes),
            s.measured.percent_of_limit.map(|p| format!(" ({p:.0} % of limit)")).unwrap_or_default()
        ));
    }
    for s in &report.services {
        out.push_str(&format!("\n**{}**: {}\n", cell(&s.service), cell(&s.verdict.reason)));
        if let Some(url) = &s.report_url {
            out.push_str(&format!("\nReport: <{url}>\n"));
        }
        if let Some(dumps) = &s.dumps {
            if !dumps.grown.is_empty() {
                out.push_str("\n| Grew between the heap dumps | Objects | Retained | Shallow |\n|---|---:|---:|---:|\n");
                for c in &dumps.grown {
                    out.push_str(&format!(
                        "| `{}` | {:+} | {} | {} |\n",
                        cell(&c.class).replace('`', "'"),
                        c.instances_delta,
                        super::evidence::signed_mib(c.retained_bytes_delta),
                        super::evidence::signed_mib(c.shallow_bytes_delta)
                    ));
                }
            }
            if let Some(suspect) = &dumps.suspect {
                out.push_str(&format!("\nSuspect: {}\n", cell(suspect)));
            }
            for problem in &dumps.problems {
                out.push_str(&format!("\n{}\n", cell(problem)));
            }
        }
        if let Some(path) = path {
            out.push_str(&format!("\n![memory of {}]({})\n", cell(&s.service), chart_path(path, &s.service).file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    out
}

fn chart_path(markdown: &Path, service: &str) -> PathBuf {
    let stem = markdown.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "leakscope".into());
    markdown.with_file_name(format!("{stem}-{}.svg", image_service_name(service)))
}

/// The run's chart (the dashboard's renderer) beside the Markdown file.
pub(super) fn write_chart(markdown: &Path, result: &ServiceResult, points: &[MemoryPoint], from_ms: i64, to_ms: i64) {
    let spec = leakscope_chart::ChartSpec {
        points,
        from_ms,
        to_ms,
        step_ms: 1000,
        width: 900,
        height: 320,
        tz_offset_minutes: 0,
        theme: leakscope_chart::Theme::Light,
        trend: leakscope_chart::trend_of(&result.verdict),
        events: &[],
    };
    match leakscope_chart::render_svg(&spec) {
        Ok(svg) => {
            let path = chart_path(markdown, &result.service);
            if let Err(e) = std::fs::write(&path, svg) {
                say!("leakscope check: cannot write {}: {e}", path.display());
            }
        }
        Err(e) => say!("leakscope check: no chart: {e}"),
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::evidence::{DumpEvidence, GrownClass};

    fn result(passed: bool) -> ServiceResult {
        let verdict = leakscope_engine::detection::status_of(&[], None, &[], 0, &leakscope_detect::Params::default());
        ServiceResult {
            service: "orders".into(),
            container: "leakscope-check-orders-1".into(),
            passed,
            failure: (!passed).then(|| "leak: floor grew <fast> & steady".into()),
            verdict,
            measured: leakscope_detect::budget::measure(&[], None),
            breaches: Vec::new(),
            oom_killed: false,
            judged_from_ms: 0,
            judged_to_ms: 60_000,
            samples: 60,
            dumps: Some(DumpEvidence {
                grown: vec![GrownClass { class: "LeakService$Session".into(), instances_delta: 6000, shallow_bytes_delta: 3 << 20, retained_bytes_delta: 12 << 20 }],
                suspect: Some("LeakService.SESSIONS holds 6 000 LeakService$Session".into()),
                ..Default::default()
            }),
            report_url: Some("https://leakscope.example/reports/abc?x=1&y=2".into()),
        }
    }

    fn report(passed: bool) -> CheckReport {
        CheckReport {
            passed,
            exit_code: u8::from(!passed),
            started_ms: 0,
            finished_ms: 120_000,
            warmup_seconds: 60.0,
            duration_seconds: 120.0,
            services: vec![result(passed)],
            error: None,
            report_error: None,
        }
    }

    #[test]
    fn text_is_escaped_for_xml_and_markdown_cells() {
        assert_eq!(xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }

    #[test]
    fn every_output_carries_the_grown_classes_and_the_report_link() {
        let failed = junit(&report(false));
        assert!(failed.contains("<property name=\"report\" value=\"https://leakscope.example/reports/abc?x=1&amp;y=2\"/>"), "{failed}");
        assert!(failed.contains("grew between the dumps: LeakService$Session +12.0 MiB retained (+6000 objects)"), "{failed}");
        assert!(failed.contains("message=\"leak: floor grew &lt;fast&gt; &amp; steady\""), "{failed}");
        let passed = junit(&report(true));
        assert!(passed.contains("<system-out>grew between the dumps") && !passed.contains("<failure"), "{passed}");
        let md = markdown(&report(false), None);
        assert!(md.contains("| `LeakService$Session` | +6000 | +12.0 MiB | +3.0 MiB |"), "{md}");
        assert!(md.contains("Report: <https://leakscope.example/reports/abc?x=1&y=2>"), "{md}");
        assert!(md.contains("Suspect: LeakService.SESSIONS holds"), "{md}");
    }
}
