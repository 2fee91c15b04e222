//! Live updates: one EventSource per page load (opened by the top bar's indicator) on `/api/v1/stream`, which the
//! server feeds with a whole `Overview` on every sampling tick.

use leakscope_model::Overview;
use leptos::prelude::*;

/// The latest overview pushed by the server; `None` until the first message
/// (and always on the server, where pages use their resources instead).
#[derive(Clone, Copy)]
pub struct LiveOverview(pub RwSignal<Option<Overview>>);

/// Whether the stream is connected (client only).
#[derive(Clone, Copy)]
pub struct StreamState(pub RwSignal<bool>);

pub fn provide_live_overview() {
    let live = RwSignal::new(None::<Overview>);
    let connected = RwSignal::new(false);
    provide_context(LiveOverview(live));
    provide_context(StreamState(connected));
}

#[cfg(feature = "hydrate")]
fn open_stream(live: RwSignal<Option<Overview>>, connected: RwSignal<bool>) {
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    let Ok(source) = web_sys::EventSource::new("/api/v1/stream") else {
        return;
    };
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
        if let Some(text) = event.data().as_string() {
            if let Ok(overview) = serde_json::from_str::<Overview>(&text) {
                live.set(Some(overview));
                connected.set(true);
            }
        }
    });
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| connected.set(false));
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    // The stream lives as long as the page: the browser reconnects it by itself.
    on_message.forget();
    on_error.forget();
    std::mem::forget(source);
}

/// "live" / "offline" dot in the top bar.
#[component]
pub fn LiveIndicator() -> impl IntoView {
    let StreamState(connected) = expect_context::<StreamState>();
    // The stream opens with the team's header (never on sign-in or public pages,
    // whose visitors may not read it); effects run only in the browser.
    let LiveOverview(live) = expect_context::<LiveOverview>();
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        open_stream(live, connected);
        #[cfg(not(feature = "hydrate"))]
        let _ = (live, connected);
    });
    view! {
        <span class="live-indicator" class:on=move || connected.get() title="Updates stream from the server every sampling tick">
            {move || if connected.get() { "live" } else { "" }}
        </span>
    }
}

/// The freshest overview: the live stream once it has spoken, else the page's resource.
pub fn current_overview(resource: Option<Overview>) -> Option<Overview> {
    let LiveOverview(live) = expect_context::<LiveOverview>();
    live.get().or(resource)
}
