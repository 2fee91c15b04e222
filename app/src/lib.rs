//! The Leakscope UI: routes, pages, components and the server functions they
//! call. Built twice: with `ssr` into the server, with `hydrate` into the
//! browser bundle.
//!
//! Architecture invariant: with `hydrate`, this crate links `leakscope-model`
//! and Leptos only; engine, bollard and SQLite are behind `ssr`.

#![recursion_limit = "256"]

pub mod components;
mod live;
pub mod pages;
pub mod server_fns;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    path, SsrMode,
};

pub use live::LiveOverview;

/// The HTML document around the app (server side only).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The server's guard made a nonce for this response and put it in the CSP header.
    #[cfg(feature = "ssr")]
    if let Some(nonce) = use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<leakscope_model::CspNonce>().cloned()) {
        provide_context(leptos::nonce::Nonce::from_value(nonce.0));
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    live::provide_live_overview();
    components::provide_me();
    components::provide_viewer_zone();
    view! {
        <Stylesheet id="leptos" href="/pkg/leakscope.css"/>
        <Title formatter=|text: String| if text.is_empty() { "Leakscope".to_string() } else { format!("{text} · Leakscope") }/>
        <Router>
            <TopBar/>
            <main>
                <Routes fallback=|| view! { <pages::NotFound/> }>
                    <Route path=path!("/") view=pages::dashboard::DashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/containers/:name") view=pages::container::ContainerPage ssr=SsrMode::Async/>
                    <Route path=path!("/dumps") view=pages::dumps::DumpsPage ssr=SsrMode::Async/>
                    <Route path=path!("/dumps/:id") view=pages::dumps::DumpPage ssr=SsrMode::Async/>
                    <Route path=path!("/dumps/:a/diff/:b") view=pages::dumps::DiffPage ssr=SsrMode::Async/>
                    // The same pages for a host reached through an agent (their data and links go there).
                    <Route path=path!("/hosts/:host/containers/:name") view=pages::container::ContainerPage ssr=SsrMode::Async/>
                    <Route path=path!("/hosts/:host/dumps/:id") view=pages::dumps::DumpPage ssr=SsrMode::Async/>
                    <Route path=path!("/hosts/:host/dumps/:a/diff/:b") view=pages::dumps::DiffPage ssr=SsrMode::Async/>
                    <Route path=path!("/reports") view=pages::reports::ReportsPage ssr=SsrMode::Async/>
                    <Route path=path!("/reports/:slug") view=pages::reports::ReportPage ssr=SsrMode::Async/>
                    <Route path=path!("/r/:token") view=pages::reports::PublicReportPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view=pages::access::AdminPage ssr=SsrMode::Async/>
                    <Route path=path!("/api") view=pages::api_reference::ApiReferencePage ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=pages::access::LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/setup/:secret") view=pages::access::SetupPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// Pages for people without an account (or not signed in yet): no navigation
/// into the team's pages, no engine banner, no live stream.
fn is_outside_path(path: &str) -> bool {
    path == "/login" || path.starts_with("/setup/") || path.starts_with("/r/")
}

#[component]
fn TopBar() -> impl IntoView {
    let location = leptos_router::hooks::use_location();
    let outside = Memo::new(move |_| is_outside_path(&location.pathname.get()));
    move || {
        if outside.get() {
            view! { <header class="topbar"><span class="brand">"Leakscope"</span></header> }.into_any()
        } else {
            view! {
                <header class="topbar">
                    <A href="/" attr:class="brand">"Leakscope"</A>
                    <nav>
                        <A href="/">"Containers"</A>
                        <A href="/dumps">"Heap dumps"</A>
                        <A href="/reports">"Reports"</A>
                    </nav>
                    <live::LiveIndicator/>
                    <components::UserMenu/>
                </header>
                <components::EngineBanner/>
            }
            .into_any()
        }
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
