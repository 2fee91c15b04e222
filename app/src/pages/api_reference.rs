//! `/api`: the API reference, rendered on the server from the OpenAPI
//! document (`/api/v1/openapi.json`), readable without JavaScript.

use leakscope_model::api_doc::{ApiField, ApiOperation, ApiReference};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::server_fns::get_api_reference;

/// `GET /api/v1/dumps/{id}` → `get-api-v1-dumps-id`, an anchor that survives doc changes.
fn anchor(op: &ApiOperation) -> String {
    let path: String = op.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let joined = format!("{}-{}", op.method.to_lowercase(), path);
    joined.split('-').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-")
}

/// A type, linked to its schema when it names one (`[DumpInfo]`, `Report?`).
fn type_view(type_name: String, reference: &ApiReference) -> AnyView {
    let bare = type_name.trim_start_matches('[').trim_end_matches('?').trim_end_matches(']').to_string();
    if reference.schemas.iter().any(|s| s.name == bare) {
        view! { <a href=format!("#schema-{bare}")><code>{type_name}</code></a> }.into_any()
    } else {
        view! { <code>{type_name}</code> }.into_any()
    }
}

fn fields_table(fields: Vec<ApiField>, reference: &ApiReference, show_location: bool) -> AnyView {
    if fields.is_empty() {
        return ().into_any();
    }
    let rows = fields
        .into_iter()
        .map(|f| {
            view! {
                <tr>
                    <td><code>{f.name}</code></td>
                    {show_location.then(|| view! { <td>{f.location}</td> })}
                    <td>{type_view(f.type_name, reference)}</td>
                    <td>{if f.required { "required" } else { "" }}</td>
                    <td class="wrap">{f.description}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="scroll-x"><table class="grid">
            <thead><tr><th>"Name"</th>{show_location.then(|| view! { <th>"In"</th> })}<th>"Type"</th><th></th><th>"Description"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table></div>
    }
    .into_any()
}

fn operation_view(op: ApiOperation, reference: &ApiReference) -> impl IntoView {
    let id = anchor(&op);
    let body = (!op.body.is_empty()).then(|| view! { <p>"Body: " <code>{op.body.clone()}</code></p> });
    let responses = op
        .responses
        .into_iter()
        .map(|r| view! { <tr><td>{r.status}</td><td>{type_view(r.body, reference)}</td><td class="wrap">{r.description}</td></tr> })
        .collect_view();
    view! {
        <section class="api-op" id=id.clone()>
            <h3><a href=format!("#{id}")><code class="method">{op.method}</code>" "<code>{op.path}</code></a></h3>
            <p>{op.summary}</p>
            <p class="muted pre-line">{op.description}</p>
            {fields_table(op.parameters, reference, true)}
            {body}
            <div class="scroll-x"><table class="grid">
                <thead><tr><th>"Status"</th><th>"Body"</th><th>"When"</th></tr></thead>
                <tbody>{responses}</tbody>
            </table></div>
        </section>
    }
}

fn reference_view(reference: ApiReference) -> impl IntoView {
    let mut tags: Vec<String> = Vec::new();
    for op in &reference.operations {
        if !tags.contains(&op.tag) {
            tags.push(op.tag.clone());
        }
    }
    let contents = tags
        .iter()
        .map(|tag| {
            let links = reference
                .operations
                .iter()
                .filter(|o| &o.tag == tag)
                .map(|o| view! { <li><a href=format!("#{}", anchor(o))><code>{o.method.clone()}" "{o.path.clone()}</code></a>" "{o.summary.clone()}</li> })
                .collect_view();
            view! { <li><b>{tag.clone()}</b><ul>{links}</ul></li> }
        })
        .collect_view();
    let operations = reference.operations.clone().into_iter().map(|op| operation_view(op, &reference)).collect_view();
    let schemas = reference
        .schemas
        .clone()
        .into_iter()
        .map(|s| {
            let id = format!("schema-{}", s.name);
            view! {
                <section class="api-schema" id=id>
                    <h3><code>{s.name}</code></h3>
                    <p class="muted">{s.description}</p>
                    {fields_table(s.fields, &reference, false)}
                </section>
            }
        })
        .collect_view();
    view! {
        <p>{reference.description.clone()}</p>
        <p class="muted">"Version " {reference.version.clone()} ". Machine-readable: "
            <a href="/api/v1/openapi.json">"/api/v1/openapi.json"</a>" (OpenAPI 3.1). Send "
            <code>"Authorization: Bearer <token>"</code>" (tokens from the admin page); a browser session works too, "
            "with its CSRF token in " <code>"x-csrf-token"</code> " for every change."</p>
        <nav class="api-contents"><ul>{contents}</ul></nav>
        <h2>"Operations"</h2>
        {operations}
        <h2>"Types"</h2>
        {schemas}
    }
}

#[component]
pub fn ApiReferencePage() -> impl IntoView {
    let reference = Resource::new(|| (), |_| get_api_reference());
    view! {
        <Title text="API reference"/>
        <h1>"API reference"</h1>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || reference.get().map(|r| match r {
                Ok(reference) => reference_view(reference).into_any(),
                Err(e) => view! { <div class="banner error">{e.to_string()}</div> }.into_any(),
            })}
        </Suspense>
    }
}
