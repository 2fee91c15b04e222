//! How an alert looks on the wire for each kind of receiver, and the POST
//! that carries it (a few retries on network errors, 429 and 5xx).

use std::time::Duration;

use leakscope_model::alerts::DeliveryResult;
use serde_json::{json, Value};

use crate::rules::Alert;
use crate::Shape;

/// Waits before the second and third attempts.
const RETRY_AFTER: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(10)];
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a URL goes, without its path and query (which hold an incoming webhook's secret).
pub fn destination(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// Only http(s) URLs with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| format!("'{}' is not a URL: {e}", destination(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err("a webhook URL starts with http:// or https:// and names a host".into());
    }
    Ok(())
}

/// The body for a receiver of this shape. `link`: the container's page.
pub fn payload(shape: Shape, alert: &Alert, link: &str) -> Value {
    let text = format!("{}: {}", alert.title, alert.sentence);
    match shape {
        Shape::Json => json!({
            "source": "leakscope",
            "event": alert.kind.as_str(),
            "container": alert.container,
            "host": alert.host,
            "title": alert.title,
            "sentence": alert.sentence,
            "verdict": alert.verdict,
            "time_to_limit_seconds": alert.time_to_limit_seconds,
            "working_set_bytes": alert.working_set_bytes,
            "limit_bytes": alert.limit_bytes,
            "held_back": alert.held,
            "time": leakscope_model::rfc3339_utc(alert.time_ms),
            "link": link,
            "text": text,
        }),
        // Slack's mrkdwn link syntax; `<`, `>` and `&` are its only escapes.
        Shape::Slack => json!({ "text": format!("*{}*\n{}\n<{}|Open in Leakscope>", slack_escape(&alert.title), slack_escape(&alert.sentence), link) }),
        Shape::Mattermost => json!({ "text": format!("**{}**\n{}\n[Open in Leakscope]({})", alert.title, alert.sentence, link), "username": "Leakscope" }),
        // An Office 365 connector card, which Teams' incoming webhooks and workflows accept.
        Shape::Teams => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": alert.title,
            "themeColor": if alert.kind == crate::AlertKind::Test { "2F80ED" } else { "D93F0B" },
            "title": alert.title,
            "text": alert.sentence,
            "potentialAction": [{ "@type": "OpenUri", "name": "Open in Leakscope", "targets": [{ "os": "default", "uri": link }] }],
        }),
    }
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The client every delivery uses: no redirects (a webhook that points elsewhere is refused, not followed).
pub fn client() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(TIMEOUT).redirects(0).user_agent(concat!("leakscope/", env!("CARGO_PKG_VERSION"))).build()
}

/// POSTs the body; retries what may pass later (no answer, 429, 5xx). Blocks.
pub fn post(agent: &ureq::Agent, url: &str, body: &Value, retry: bool) -> DeliveryResult {
    let mut attempt = 0;
    loop {
        let (result, worth_retrying) = match agent.post(url).send_json(body) {
            Ok(response) => {
                let code = response.status();
                let delivered = (200..300).contains(&code);
                let detail = if delivered { format!("delivered (HTTP {code})") } else { format!("refused: HTTP {code}") };
                (DeliveryResult { delivered, status: Some(code), detail }, false)
            }
            Err(ureq::Error::Status(code, _)) => {
                (DeliveryResult { delivered: false, status: Some(code), detail: format!("refused: HTTP {code}") }, code == 429 || code >= 500)
            }
            Err(ureq::Error::Transport(t)) => (DeliveryResult { delivered: false, status: None, detail: format!("not delivered: {}", describe(&t)) }, true),
        };
        match RETRY_AFTER.get(attempt) {
            Some(wait) if retry && worth_retrying => {
                std::thread::sleep(*wait);
                attempt += 1;
            }
            _ => {
                let tries = attempt + 1;
                return if tries > 1 { DeliveryResult { detail: format!("{} after {tries} attempts", result.detail), ..result } } else { result };
            }
        }
    }
}

/// The transport error without the URL (it holds the secret) but with its cause ("Connection refused").
fn describe(t: &ureq::Transport) -> String {
    let mut text = t.kind().to_string();
    if let Some(message) = t.message() {
        text.push_str(": ");
        text.push_str(message);
    }
    let mut source = std::error::Error::source(t);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlertKind;

    fn alert() -> Alert {
        Alert {
            kind: AlertKind::Leak,
            container: "web".into(),
            host: "h1".into(),
            title: "Leak: web on h1".into(),
            sentence: "floor grew <fast> & steadily".into(),
            verdict: Some("leak".into()),
            time_to_limit_seconds: Some(600.0),
            working_set_bytes: Some(1),
            limit_bytes: Some(2),
            time_ms: 0,
            held: 0,
        }
    }

    #[test]
    fn each_receiver_gets_its_own_shape() {
        let link = "https://leakscope.example/containers/web";
        let generic = payload(Shape::Json, &alert(), link);
        assert_eq!(generic["event"], "leak");
        assert_eq!(generic["host"], "h1");
        assert_eq!(generic["time_to_limit_seconds"], 600.0);
        assert_eq!(generic["time"], "1970-01-01T00:00:00Z");
        let slack = payload(Shape::Slack, &alert(), link);
        assert_eq!(slack["text"], "*Leak: web on h1*\nfloor grew &lt;fast&gt; &amp; steadily\n<https://leakscope.example/containers/web|Open in Leakscope>");
        assert!(payload(Shape::Mattermost, &alert(), link)["text"].as_str().unwrap().ends_with("[Open in Leakscope](https://leakscope.example/containers/web)"));
        let teams = payload(Shape::Teams, &alert(), link);
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["potentialAction"][0]["targets"][0]["uri"], link);
    }

    #[test]
    fn urls_are_checked_and_shown_without_their_secret() {
        assert_eq!(destination("https://hooks.slack.com/services/T0/B0/XYZ?x=1"), "https://hooks.slack.com");
        assert_eq!(destination("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000");
        assert!(check_url("https://hooks.example/x").is_ok());
        assert!(check_url("ftp://hooks.example/x").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("not a url").is_err());
    }
}
