pub mod access;
pub mod api_reference;
pub mod container;
pub mod dashboard;
pub mod dumps;
pub mod reports;

use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="empty">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to all containers"</a></p>
        </section>
    }
}
