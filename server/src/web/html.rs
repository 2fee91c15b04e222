//! The hand-written pages' escaping and frame (sign-in, setup, admin, reports).

use axum::response::Html;

/// HTML-escapes text for the hand-written pages.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small page in the dashboard's style (no script: these pages need none).
pub fn plain_page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>{} · Leakscope</title><link rel=\"stylesheet\" href=\"/pkg/leakscope.css\">\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\"></head><body><header class=\"topbar\"><a href=\"/\" class=\"brand\">Leakscope</a></header>\
         <main class=\"page narrow\">{body}</main></body></html>",
        esc(title)
    ))
}

