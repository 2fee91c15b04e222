//! The route policy in one table, so what each role may do is read in one
//! place and tested as a whole (handlers do not check roles themselves).

use crate::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Login, setup, static assets, public report links.
    Public,
    /// Any signed-in user or token with at least this role.
    Needs(Role),
}

/// The access a request needs, from its method and path.
pub fn required_access(method: &str, path: &str) -> Access {
    let reading = matches!(method, "GET" | "HEAD" | "OPTIONS");
    let mut segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // `/hosts/<host>/…` is the same route on another host: the same role is needed.
    if segments.len() > 2 && segments[0] == "hosts" {
        segments.drain(..2);
    }
    let public = matches!(segments.as_slice(), ["login"] | ["setup", _] | ["r", ..] | ["pkg", ..])
        || matches!(path, "/favicon.svg" | "/favicon.ico" | "/robots.txt");
    if public && (reading || matches!(segments.as_slice(), ["login"] | ["setup", _])) {
        return Access::Public;
    }
    // Agents prove themselves with their own secrets (an enrollment token, then
    // their credential), which the handlers check: no user or API token is involved.
    if matches!((method, segments.as_slice()), ("POST", ["api", "v1", "agents", "enroll"]) | ("GET", ["api", "v1", "agents", "connect"])) {
        return Access::Public;
    }
    if path == "/logout" {
        return Access::Needs(Role::Viewer);
    }
    let api = segments.first() == Some(&"api") && segments.get(1) == Some(&"v1");
    let rest: &[&str] = if api { &segments[2..] } else { &segments[..] };
    // Admin: accounts, tokens, agents, webhooks (their URLs are secrets), the audit log.
    if matches!(rest.first(), Some(&"users") | Some(&"tokens") | Some(&"agents") | Some(&"webhooks") | Some(&"audit") | Some(&"admin")) {
        return Access::Needs(Role::Admin);
    }
    // Dump contents hold secrets: downloads are for operators, whatever the method.
    if matches!(rest, ["dumps", _, "download"]) {
        return Access::Needs(Role::Operator);
    }
    if reading {
        Access::Needs(Role::Viewer)
    } else {
        // Every change (capture, upload, delete, reports, sharing) is an operator's.
        Access::Needs(Role::Operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_table() {
        use Access::*;
        let cases = [
            ("GET", "/login", Public),
            ("POST", "/login", Public),
            ("GET", "/setup/abc", Public),
            ("POST", "/setup/abc", Public),
            ("GET", "/r/tok", Public),
            ("POST", "/r/tok", Needs(Role::Operator)),
            ("GET", "/pkg/leakscope.wasm", Public),
            ("GET", "/", Needs(Role::Viewer)),
            ("GET", "/containers/web", Needs(Role::Viewer)),
            ("GET", "/containers/web/memory.png", Needs(Role::Viewer)),
            ("GET", "/api/v1/containers", Needs(Role::Viewer)),
            ("GET", "/api/v1/dumps/abc/download", Needs(Role::Operator)),
            ("GET", "/dumps/abc/download", Needs(Role::Operator)),
            ("POST", "/api/v1/containers/web/dumps", Needs(Role::Operator)),
            ("POST", "/containers/web/capture", Needs(Role::Operator)),
            ("DELETE", "/api/v1/dumps/abc", Needs(Role::Operator)),
            ("POST", "/api/v1/reports", Needs(Role::Operator)),
            ("GET", "/api/v1/reports", Needs(Role::Viewer)),
            ("GET", "/api/v1/tokens", Needs(Role::Admin)),
            ("GET", "/admin", Needs(Role::Admin)),
            ("GET", "/api/v1/audit", Needs(Role::Admin)),
            ("GET", "/api/v1/webhooks", Needs(Role::Admin)),
            ("POST", "/admin/webhooks/3/test", Needs(Role::Admin)),
            ("GET", "/metrics", Needs(Role::Viewer)),
            ("GET", "/api/v1/hosts", Needs(Role::Viewer)),
            ("POST", "/api/v1/agents/enroll", Public),
            ("GET", "/api/v1/agents/connect", Public),
            ("GET", "/api/v1/agents", Needs(Role::Admin)),
            ("POST", "/api/v1/agents/enrollments", Needs(Role::Admin)),
            ("DELETE", "/api/v1/agents/4", Needs(Role::Admin)),
            ("POST", "/logout", Needs(Role::Viewer)),
            ("GET", "/hosts/edge-1/dumps/abc/download", Needs(Role::Operator)),
            ("GET", "/hosts/edge-1/api/v1/dumps/abc/download", Needs(Role::Operator)),
            ("GET", "/hosts/edge-1/containers/web", Needs(Role::Viewer)),
            ("POST", "/hosts/edge-1/containers/web/capture", Needs(Role::Operator)),
            ("GET", "/hosts/edge-1/admin", Needs(Role::Admin)),
            ("GET", "/hosts/edge-1/pkg/leakscope.wasm", Public),
        ];
        for (method, path, want) in cases {
            assert_eq!(required_access(method, path), want, "{method} {path}");
        }
    }
}
