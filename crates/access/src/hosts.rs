//! Roles limited to hosts: patterns like `payments-*,db1` and the host a
//! request acts on.
//!
//! The matcher is a few lines for `*` only (host names are plain DNS-like
//! words), so no glob crate is pulled in.

use crate::AccessError;

/// True when `host` matches one of the comma-separated patterns (`*` matches any run of characters).
pub fn matches_any(patterns: &str, host: &str) -> bool {
    patterns.split(',').map(str::trim).filter(|p| !p.is_empty()).any(|p| matches(p.as_bytes(), host.as_bytes()))
}

fn matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| matches(rest, &text[skip..])),
        Some((c, rest)) => text.first() == Some(c) && matches(rest, &text[1..]),
    }
}

/// Checks and tidies patterns for storing: `None` or empty means every host.
pub fn normalise(patterns: Option<&str>) -> Result<Option<String>, AccessError> {
    let Some(patterns) = patterns.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let parts: Vec<&str> = patterns.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    for part in &parts {
        let valid = part.len() <= 64 && part.chars().all(|c| c.is_ascii_alphanumeric() || "._-*".contains(c));
        if !valid || part.chars().filter(|&c| c == '*').count() > 4 {
            return Err(AccessError::Invalid(format!(
                "'{part}' is not a host pattern (letters, digits, '.', '_', '-' and '*', up to 64 characters)"
            )));
        }
    }
    Ok(Some(parts.join(",")))
}

/// The host a request acts on, when it names one: `/hosts/<host>/…` or `?host=<host>`.
pub fn host_of_request(path: &str, query: Option<&str>) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/hosts/") {
        return rest.split('/').next().filter(|h| !h.is_empty()).map(str::to_string);
    }
    query?.split('&').find_map(|pair| pair.strip_prefix("host=")).filter(|h| !h.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Principal, Role};

    #[test]
    fn patterns_and_the_role_on_each_host() {
        assert!(matches_any("payments-*", "payments-eu1"));
        assert!(matches_any("db1, payments-*", "db1"));
        assert!(!matches_any("payments-*", "db1"));
        assert!(!matches_any("payments-*", "xpayments-1"));
        assert!(matches_any("*-eu-*", "web-eu-2"));
        assert!(normalise(Some("payments-*; rm -rf")).is_err());
        assert_eq!(normalise(Some(" a , b* ")).unwrap().as_deref(), Some("a,b*"));
        assert_eq!(normalise(Some("  ")).unwrap(), None);
        let operator = Principal { name: "op".into(), role: Role::Operator, csrf: None, hosts: Some("payments-*".into()) };
        assert_eq!(operator.role_on("payments-1"), Role::Operator);
        assert_eq!(operator.role_on("db1"), Role::Viewer);
        let everywhere = Principal { hosts: None, ..operator };
        assert_eq!(everywhere.role_on("db1"), Role::Operator);
        assert_eq!(host_of_request("/hosts/db1/containers/web/capture", None).as_deref(), Some("db1"));
        assert_eq!(host_of_request("/api/v1/containers/web/dumps", Some("pid=1&host=db1")).as_deref(), Some("db1"));
        assert_eq!(host_of_request("/api/v1/containers/web/dumps", Some("pid=1")), None);
    }
}
