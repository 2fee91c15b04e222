//! The API contract. Every `/api/v1` route is registered through
//! `OpenApiRouter` from its handler's `#[utoipa::path]`, so the router and
//! `/api/v1/openapi.json` come from one list and cannot drift. What the
//! annotations cannot know is filled in here once, from the same facts the
//! server acts on: who may call a route (`required_access`, the guard's
//! policy), how a request proves it (bearer token, or session cookie plus the
//! CSRF header for changes), and the error answers every route can give.

use std::sync::Arc;

use axum::{Extension, Json, Router};
use leakscope_access::{required_access, Access};
use leakscope_model::api_doc::{ApiField, ApiOperation, ApiReference, ApiResponse, ApiSchema};
use leakscope_model::ApiError;
use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Leakscope API",
        description = "Memory of every container, leak verdicts, heap dump capture and analysis, reports. \
            Every answer is JSON unless said otherwise; every error is `{\"error\": \"…\"}` with the status that fits.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "engine", description = "Sampling health and the live stream"),
        (name = "hosts", description = "Docker hosts and the agents that report them (admins enroll and revoke agents)"),
        (name = "containers", description = "Memory series, verdicts, events, logs, limit advice"),
        (name = "capture", description = "Heap dumps taken from running containers"),
        (name = "dumps", description = "The dump history and its analyses"),
        (name = "reports", description = "Frozen leak reports and their public links"),
        (name = "access", description = "Accounts, API tokens, webhooks for notifications, the audit log (admins)"),
    ),
    components(schemas(ApiError))
)]
struct ApiDoc;

pub type ApiDocument = Arc<Document>;

/// The documented routes and their document.
pub fn api() -> (Router<AppState>, ApiDocument) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .merge(crate::api::api())
        .merge(crate::capture_api::api())
        .merge(crate::dumps_api::api())
        .merge(crate::reports_api::api())
        .merge(crate::auth::api())
        .merge(crate::alerts_api::api())
        .merge(crate::hub::api())
        .split_for_parts();
    describe_access(&mut doc);
    let doc = Arc::new(doc);
    (router.layer(Extension(doc.clone())), doc)
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "engine", responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
async fn openapi_json(Extension(doc): Extension<ApiDocument>) -> Json<Document> {
    Json(doc.as_ref().clone())
}

pub const BEARER: &str = "bearer";
pub const SESSION: &str = "session";
pub const CSRF: &str = "csrf";

fn operations(doc: &mut Document) -> impl Iterator<Item = (&'static str, &String, &mut Operation)> {
    doc.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            ("GET", item.get.as_mut()),
            ("POST", item.post.as_mut()),
            ("PUT", item.put.as_mut()),
            ("PATCH", item.patch.as_mut()),
            ("DELETE", item.delete.as_mut()),
        ]
        .into_iter()
        .filter_map(move |(method, op)| op.map(|op| (method, path, op)))
    })
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ApiError"))).build())
        .build()
        .into()
}

fn describe_access(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).description(Some("An API token from /admin or `leakscope token create`")).build()),
    );
    components.add_security_scheme(
        SESSION,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::auth::SESSION_COOKIE,
            "The browser session after signing in at /login",
        ))),
    );
    components.add_security_scheme(
        CSRF,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-csrf-token",
            "With a session cookie, every change must echo the session's CSRF token (from /api/v1/me)",
        ))),
    );
    for (method, path, op) in operations(doc) {
        let changes_state = method != "GET";
        let session = if changes_state { SecurityRequirement::new(SESSION, [""; 0]).add(CSRF, [""; 0]) } else { SecurityRequirement::new(SESSION, [""; 0]) };
        op.security = Some(vec![SecurityRequirement::new(BEARER, [""; 0]), session]);
        let role = match required_access(method, path) {
            Access::Public => "Open to anyone.".to_string(),
            Access::Needs(role) => format!("Needs the {role} role."),
        };
        op.description = Some(match op.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{role}"),
            _ => role,
        });
        let takes_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
        let mut standard = vec![
            ("401", "not signed in, or the token is unknown or revoked"),
            ("403", "the caller's role is too low, or the CSRF header is missing or wrong"),
            ("500", "a failure inside the server; it is logged"),
        ];
        if takes_input {
            standard.push(("400", "a parameter or the body is malformed"));
        }
        if op.request_body.is_some() {
            standard.push(("413", "the body is too large"));
        }
        for (status, description) in standard {
            op.responses.responses.entry(status.to_string()).or_insert_with(|| error_response(description));
        }
    }
}

/// The document flattened for the `/api` page (read from its JSON form,
/// which is the contract; utoipa's types are only how it is built).
pub fn reference(doc: &Document) -> ApiReference {
    let json = serde_json::to_value(doc).unwrap_or_default();
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut operations = Vec::new();
    for (path, item) in json["paths"].as_object().into_iter().flatten() {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let parameters = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| ApiField {
                    name: text(p, "name"),
                    location: text(p, "in"),
                    type_name: type_name(&p["schema"]),
                    required: p["required"].as_bool().unwrap_or(false),
                    description: text(p, "description"),
                })
                .collect();
            let body = op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(media, c)| format!("{media}: {}", type_name(&c["schema"])))
                .collect::<Vec<_>>()
                .join(", ");
            let responses = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(status, r)| ApiResponse {
                    status: status.clone(),
                    description: text(r, "description"),
                    body: r["content"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(media, c)| if media == "application/json" { type_name(&c["schema"]) } else { media.clone() })
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect();
            operations.push(ApiOperation {
                method: method.to_uppercase(),
                path: path.clone(),
                tag: op["tags"][0].as_str().unwrap_or_default().to_string(),
                summary: text(op, "summary"),
                description: text(op, "description"),
                parameters,
                body,
                responses,
            });
        }
    }
    let order = |tag: &str| json["tags"].as_array().and_then(|t| t.iter().position(|x| x["name"] == tag)).unwrap_or(usize::MAX);
    operations.sort_by(|a, b| (order(&a.tag), &a.path).cmp(&(order(&b.tag), &b.path)));
    let schemas = json["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, schema)| {
            let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let fields = schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(field, s)| ApiField {
                    name: field.clone(),
                    location: String::new(),
                    type_name: type_name(s),
                    required: required.contains(&field.as_str()),
                    description: text(s, "description"),
                })
                .collect::<Vec<ApiField>>();
            let description = match (text(schema, "description"), fields.is_empty()) {
                (d, true) => format!("{} {d}", type_name(schema)).trim().to_string(),
                (d, false) => d,
            };
            ApiSchema { name: name.clone(), description, fields }
        })
        .collect();
    ApiReference {
        title: text(&json["info"], "title"),
        version: text(&json["info"], "version"),
        description: text(&json["info"], "description"),
        operations,
        schemas,
    }
}

/// A JSON Schema as a short type: `[DumpInfo]`, `integer (int64)?`, `"viewer" | "admin"`.
fn type_name(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            let names: Vec<String> = list.iter().filter(|s| s["type"] != "null").map(type_name).collect();
            let nullable = if names.len() < list.len() { "?" } else { "" };
            return format!("{}{nullable}", names.join(" | "));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | ");
    }
    let mut nullable = false;
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| {
                nullable |= *t == "null";
                *t != "null"
            })
            .collect(),
        _ => vec![],
    };
    let format = schema.get("format").and_then(Value::as_str);
    let names: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!("[{}]", type_name(&schema["items"])),
            "object" if schema["additionalProperties"].is_object() => format!("map of {}", type_name(&schema["additionalProperties"])),
            "string" if format == Some("binary") => "bytes".into(),
            other => match format {
                Some(f) if other != "string" => format!("{other} ({f})"),
                _ => other.to_string(),
            },
        })
        .collect();
    let name = if names.is_empty() { "any".to_string() } else { names.join(" | ") };
    if nullable { format!("{name}?") } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `/api/v1` route must come from an annotated handler; a plain
    /// `.route("/api/v1/…")` would be served but missing from the document.
    #[test]
    fn no_api_route_bypasses_the_document() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![dir];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for line in text.lines().filter(|l| !l.trim_start().starts_with("//") && l.contains(".route(\"/api/")) {
                        // The one exception: the JSON 404 for unknown API paths.
                        if !line.contains("/api/v1/{*rest}") {
                            offenders.push(format!("{}: {}", path.display(), line.trim()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "undocumented API routes:\n{}", offenders.join("\n"));
    }

    #[test]
    fn every_operation_is_described_and_secured() {
        let (_, doc) = api();
        let mut doc = (*doc).clone();
        let mut count = 0;
        for (method, path, op) in operations(&mut doc) {
            count += 1;
            assert!(path.starts_with("/api/v1/"), "{path}");
            assert!(op.summary.as_deref().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary (its doc comment)");
            let security = op.security.as_ref().unwrap();
            assert_eq!(security.len(), 2, "{method} {path}");
            // (101 is the agents' websocket switching protocols.)
            assert!(op.responses.responses.keys().any(|s| s.starts_with('2') || s == "101"), "{method} {path} documents no success");
            for status in ["401", "403", "500"] {
                assert!(op.responses.responses.contains_key(status), "{method} {path} lacks {status}");
            }
        }
        assert!(count >= 33, "only {count} operations documented");
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(json["paths"]["/api/v1/tokens"]["post"]["description"].as_str().unwrap().lines().last(), Some("Needs the admin role."));
        assert_eq!(json["paths"]["/api/v1/dumps/{id}/download"]["get"]["description"].as_str().unwrap().lines().last(), Some("Needs the operator role."));
    }

    #[test]
    fn the_reference_page_reads_the_document() {
        let (_, doc) = api();
        let reference = reference(&doc);
        assert_eq!(reference.operations.len(), operations(&mut (*doc).clone()).count());
        let list = reference.operations.iter().find(|o| o.method == "GET" && o.path == "/api/v1/dumps").unwrap();
        assert_eq!(list.tag, "dumps");
        assert!(list.responses.iter().any(|r| r.status == "200" && r.body == "[DumpInfo]"), "{:?}", list.responses);
        assert!(list.parameters.iter().any(|p| p.name == "service" && p.location == "query" && !p.required));
        let upload = reference.operations.iter().find(|o| o.method == "POST" && o.path == "/api/v1/dumps").unwrap();
        assert!(upload.body.starts_with("application/octet-stream"), "{}", upload.body);
        let token = reference.schemas.iter().find(|s| s.name == "TokenCreated").unwrap();
        let role = token.fields.iter().find(|f| f.name == "role").unwrap();
        assert_eq!(role.type_name, "Role");
        let role = reference.schemas.iter().find(|s| s.name == "Role").unwrap();
        assert!(role.description.contains("\"operator\""), "{}", role.description);
        // Engine first, as the document's tags are ordered.
        assert_eq!(reference.operations[0].tag, "engine");
    }
}
