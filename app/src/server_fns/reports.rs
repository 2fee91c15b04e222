//! Server functions of the report pages: the frozen record, its chart drawn
//! and its notes rendered on the server, so a report reads with JavaScript off.

use leakscope_model::reports::{ReportListItem, ReportPage};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::{engine, no_store, set_status};

/// `/reports`: every report, newest first.
#[server(input = GetUrl)]
pub async fn list_reports() -> Result<Vec<ReportListItem>, ServerFnError> {
    engine()?.reports().await.map_err(|e| ServerFnError::new(e.to_string()))
}

/// A report for the team (`Ok(None)` and a 404 when there is no such report).
#[server(input = GetUrl)]
pub async fn get_report(slug: String) -> Result<Option<ReportPage>, ServerFnError> {
    let found = engine()?.report(&slug).await;
    page_of(found, false)
}

/// A report through its public link: nothing that points into the team's pages.
#[server(input = GetUrl)]
pub async fn get_public_report(token: String) -> Result<Option<ReportPage>, ServerFnError> {
    let found = engine()?.public_report(&token).await;
    no_store();
    page_of(found, true).map(|page| {
        page.map(|mut p| {
            p.report.created_by.clear();
            p.report.public_token = None;
            p.report.dumps.iter_mut().for_each(|d| d.info.requested_by = None);
            p
        })
    })
}

#[cfg(feature = "ssr")]
fn page_of(found: Result<leakscope_model::reports::Report, leakscope_engine::EngineError>, public: bool) -> Result<Option<ReportPage>, ServerFnError> {
    let mut report = match found {
        Ok(r) => r,
        Err(leakscope_engine::EngineError::UnknownReport(_)) => {
            set_status(http::StatusCode::NOT_FOUND);
            return Ok(None);
        }
        Err(e) => return Err(ServerFnError::new(e.to_string())),
    };
    let spec = leakscope_chart::report_spec(&report, 1000, 320, leakscope_chart::Theme::Light);
    let chart_svg = leakscope_chart::render_svg(&spec).map_err(|e| ServerFnError::new(format!("the chart could not be drawn: {e}")))?;
    let chart_svg = chart_svg.find("<svg").map(|at| chart_svg[at..].to_string()).unwrap_or(chart_svg);
    let og_image = format!("{}{}", request_origin(), report.chart_png_path());
    let notes_html = markdown_html(&report.notes);
    // Drawn already: the points need not travel to the browser.
    report.series.clear();
    Ok(Some(ReportPage { report, chart_svg, notes_html, og_image, public }))
}

/// The site's address as the browser used it, for absolute OpenGraph URLs.
#[cfg(feature = "ssr")]
fn request_origin() -> String {
    let parts = use_context::<http::request::Parts>();
    let header = |name: &str| parts.as_ref().and_then(|p| p.headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_string);
    leakscope_model::reports::site_origin(header("host").as_deref(), header("x-forwarded-proto").as_deref())
}

/// Markdown to HTML for notes written by people and read by everyone who opens
/// the link: raw HTML is shown as text, and ammonia keeps only safe tags and
/// http(s)/mailto/relative links (images would load from anywhere: dropped).
#[cfg(feature = "ssr")]
pub fn markdown_html(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let events = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::PassThrough)
        .rm_tags(["img"])
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&html)
        .to_string()
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::markdown_html;

    #[test]
    fn notes_lose_raw_html_and_dangerous_links() {
        let html = markdown_html("**hi** <script>alert(1)</script> [x](javascript:alert(1)) [ok](https://example.com) ![i](http://evil/p.png) [rel](/dumps)");
        assert!(html.contains("<strong>hi</strong>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "raw HTML is shown as text: {html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(html.contains("href=\"/dumps\""), "{html}");
        assert!(!html.contains("<img") && !html.contains("evil"), "{html}");
    }
}
