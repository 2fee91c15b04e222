//! Sign-in, the first-run setup link and the admin page. Their forms post to
//! the server's own handlers (cookies, CSRF, redirects); the pages only show.

use leakscope_model::admin::AdminView;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::components::{with_csrf, LocalTime};
use crate::server_fns::{check_setup_link, get_admin, setup_pending};

fn error_banner(error: Option<String>, id: &'static str) -> impl IntoView {
    error.filter(|e| !e.is_empty()).map(|e| view! { <p class="banner error" id=id>{e}</p> })
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let next = query.read_untracked().get("next").unwrap_or_else(|| "/".into());
    let error = query.read_untracked().get("error");
    let pending = Resource::new(|| (), |_| setup_pending());
    view! {
        <Title text="Sign in"/>
        <section class="narrow">
            <h1>"Sign in"</h1>
            <Suspense fallback=|| ()>
                {move || pending.get().and_then(Result::ok).filter(|p| *p).map(|_| view! {
                    <p class="banner">"No admin exists yet: open the one-time setup link that " <code>"leakscope serve"</code> " printed on its console."</p>
                })}
            </Suspense>
            {error_banner(error, "login-error")}
            <form method="post" action="/login" class="stack panel">
                <input type="hidden" name="next" value=next/>
                <label>"User" <input name="name" id="login-name" autocomplete="username" required/></label>
                <label>"Password" <input name="password" id="login-password" type="password" autocomplete="current-password" required/></label>
                <button type="submit" id="login-submit">"Sign in"</button>
            </form>
        </section>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let params = use_params_map();
    let secret = params.read_untracked().get("secret").unwrap_or_default();
    let error = use_query_map().read_untracked().get("error");
    let valid = Resource::new(move || secret.clone(), check_setup_link);
    view! {
        <Title text="First admin"/>
        <section class="narrow">
            <Suspense fallback=|| ()>
                {move || valid.get().map(|v| match v {
                    Ok(true) => view! {
                        <h1>"Create the first admin"</h1>
                        {error_banner(error.clone(), "setup-error")}
                        <p class="muted">"This link works once. The admin adds the rest of the team under Admin."</p>
                        <form method="post" class="stack panel">
                            <label>"User" <input name="name" id="setup-name" required/></label>
                            <label>"Password (10 characters or more)" <input name="password" id="setup-password" type="password" autocomplete="new-password" required/></label>
                            <button type="submit" id="setup-submit">"Create admin and sign in"</button>
                        </form>
                    }.into_any(),
                    _ => view! {
                        <h1>"This setup link is used up or wrong"</h1>
                        <p><a href="/login">"Sign in"</a></p>
                    }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let admin = Resource::new(|| (), |_| get_admin());
    let error = use_query_map().read_untracked().get("error");
    let notice = use_query_map().read_untracked().get("notice").filter(|n| !n.is_empty()).map(|n| view! { <p class="banner" id="admin-notice">{n}</p> });
    view! {
        <Title text="Admin"/>
        <h1>"Admin"</h1>
        <p class="muted">"Scripts and CI use the same operations as this page: "
            <a href="/api" id="api-reference-link">"API reference"</a>" (the "<a href="/api/v1/openapi.json">"OpenAPI document"</a>")."</p>
        {error_banner(error, "admin-error")}
        {notice}
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || admin.get().map(|r| match r {
                Ok(view) => view! { <AdminView view/> }.into_any(),
                Err(e) => view! { <div class="banner error">{e.to_string()}</div> }.into_any(),
            })}
        </Suspense>
    }
}

fn role_options() -> impl IntoView {
    ["viewer", "operator", "admin"].map(|r| view! { <option value=r>{r}</option> }).collect_view()
}

/// When it was revoked, or the button that revokes it.
fn revoke_cell(revoked_ms: Option<i64>, action: String) -> AnyView {
    match revoked_ms {
        Some(r) => view! { <span class="muted">"revoked " <LocalTime ms=r/></span> }.into_any(),
        None => view! { <form method="post" action=with_csrf(action) class="inline"><button class="link danger">"Revoke"</button></form> }.into_any(),
    }
}

#[component]
fn AdminView(view: AdminView) -> impl IntoView {
    let new_token = view.new_token.map(|t| view! {
        <div class="banner" id="new-token">"New token, shown only now — copy it: " <code id="new-token-value">{t}</code></div>
    });
    let users = view
        .users
        .into_iter()
        .map(|u| {
            let action = with_csrf(format!("/admin/users/{}/delete", u.id));
            let name = u.name.clone();
            view! {
                <tr data-user=name>
                    <td>{u.name}</td><td>{role_on_hosts(u.role, u.hosts)}</td><td><LocalTime ms=u.created_ms/></td>
                    <td><form method="post" action=action class="inline"><button class="link danger">"Remove"</button></form></td>
                </tr>
            }
        })
        .collect_view();
    let tokens = view
        .tokens
        .into_iter()
        .map(|t| {
            let state = revoke_cell(t.revoked_ms, format!("/admin/tokens/{}/revoke", t.id));
            view! {
                <tr>
                    <td>{t.name}</td><td>{role_on_hosts(t.role, t.hosts)}</td><td><LocalTime ms=t.created_ms/></td>
                    <td>{t.created_by.unwrap_or_else(|| "console".into())}</td><td>{state}</td>
                </tr>
            }
        })
        .collect_view();
    let webhooks = view
        .webhooks
        .into_iter()
        .map(|w| {
            let test = with_csrf(format!("/admin/webhooks/{}/test", w.id));
            let delete = with_csrf(format!("/admin/webhooks/{}/delete", w.id));
            let last = match (w.last_result, w.last_result_ms) {
                (Some(result), Some(ms)) => view! { <span>{result}" · "<LocalTime ms=ms/></span> }.into_any(),
                _ => view! { <span class="muted">"nothing sent yet"</span> }.into_any(),
            };
            let name = w.name.clone();
            view! {
                <tr data-webhook=name>
                    <td>{w.name}</td><td>{w.kind}</td><td><code>{w.destination}</code></td><td class="wrap">{last}</td>
                    <td class="actions">
                        <form method="post" action=test class="inline"><button class="link">"Send test"</button></form>
                        <form method="post" action=delete class="inline"><button class="link danger">"Remove"</button></form>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let agents = view
        .agents
        .into_iter()
        .map(|a| {
            let state = revoke_cell(a.revoked_ms, format!("/admin/agents/{}/revoke", a.id));
            let seen = match a.last_seen_ms {
                Some(ms) => view! { <LocalTime ms=ms/> }.into_any(),
                None => view! { <span class="muted">"not yet"</span> }.into_any(),
            };
            let name = a.name.clone();
            view! {
                <tr data-agent=name>
                    <td>{a.name}</td><td><code class="id">{a.host_id}</code></td><td><LocalTime ms=a.enrolled_ms/></td><td>{seen}</td><td>{state}</td>
                </tr>
            }
        })
        .collect_view();
    let audit = view
        .audit
        .into_iter()
        .map(|a| view! {
            <tr><td><LocalTime ms=a.t_ms/></td><td>{a.actor}</td><td>{a.action}</td><td class="host">{a.host}</td><td class="wrap">{a.target}</td><td class="wrap">{a.detail.unwrap_or_default()}</td></tr>
        })
        .collect_view();
    view! {
        {new_token}
        <section class="panel">
            <h2>"Users"</h2>
            <div class="scroll-x"><table class="grid" id="users">
                <thead><tr><th>"User"</th><th>"Role"</th><th>"Created"</th><th></th></tr></thead>
                <tbody>{users}</tbody>
            </table></div>
            <form method="post" action=with_csrf("/admin/users".into()) class="row-form" id="add-user">
                <input name="name" placeholder="user name" aria-label="user name" required/>
                <input name="password" type="password" placeholder="password (10+)" aria-label="password" autocomplete="new-password" required/>
                <select name="role" aria-label="role">{role_options()}</select>
                <input name="hosts" placeholder="on hosts (all; or payments-*,db1)" aria-label="limit the role to hosts"
                    title="The role holds on these hosts only; the user is a viewer on every other host"/>
                <button type="submit">"Add user"</button>
            </form>
        </section>
        <section class="panel">
            <h2>"API tokens"</h2>
            <p class="muted">"For scripts and CI: " <code>"Authorization: Bearer lsk_…"</code> ". Shown once when made; only a hash is kept."</p>
            <div class="scroll-x"><table class="grid" id="tokens">
                <thead><tr><th>"Name"</th><th>"Role"</th><th>"Created"</th><th>"By"</th><th></th></tr></thead>
                <tbody>{tokens}</tbody>
            </table></div>
            <form method="post" action=with_csrf("/admin/tokens".into()) class="row-form" id="add-token">
                <input name="name" placeholder="token name" aria-label="token name" required/>
                <select name="role" aria-label="role">{role_options()}</select>
                <input name="hosts" placeholder="on hosts (all; or payments-*,db1)" aria-label="limit the role to hosts"
                    title="The role holds on these hosts only; the token is a viewer on every other host"/>
                <button type="submit">"Create token"</button>
            </form>
        </section>
        <section class="panel">
            <h2>"Host agents"</h2>
            <p class="muted">"On each further Docker host: " <code>"leakscope agent --hub URL --token lse_…"</code>
                ". The agent dials out to this server (no inbound port on the host) with a token made here, which works once within a day; "
                "revoking an agent closes its connection at once."</p>
            <div class="scroll-x"><table class="grid" id="agents">
                <thead><tr><th>"Host"</th><th>"Host id"</th><th>"Enrolled"</th><th>"Last heard from"</th><th></th></tr></thead>
                <tbody>{agents}</tbody>
            </table></div>
            <form method="post" action=with_csrf("/admin/agents/enrollments".into()) class="row-form" id="add-agent">
                <input name="name" placeholder="host name (optional)" aria-label="host name"/>
                <button type="submit">"Create enrollment token"</button>
            </form>
        </section>
        <section class="panel">
            <h2>"Notifications"</h2>
            <p class="muted">"A message goes to every webhook when a container gets a new leak verdict, is OOM-killed, or crosses a share of its memory limit; "
                "at most one per container and kind within the server's --alert-repeat (an hour by default; the ones held back are counted in the next). Every delivery and failure is in the audit log."</p>
            <div class="scroll-x"><table class="grid" id="webhooks">
                <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Goes to"</th><th>"Last delivery"</th><th></th></tr></thead>
                <tbody>{webhooks}</tbody>
            </table></div>
            <form method="post" action=with_csrf("/admin/webhooks".into()) class="row-form" id="add-webhook">
                <input name="name" placeholder="name (e.g. #payments-oncall)" aria-label="webhook name" required/>
                <input name="url" type="url" placeholder="https://hooks.slack.com/services/…" aria-label="webhook URL" autocomplete="off" required/>
                <select name="kind" aria-label="kind">
                    <option value="json">"JSON"</option><option value="slack">"Slack"</option>
                    <option value="mattermost">"Mattermost"</option><option value="teams">"Teams"</option>
                </select>
                <button type="submit">"Add webhook"</button>
            </form>
        </section>
        <section class="panel">
            <h2>"Audit log"</h2>
            <div class="scroll-x"><table class="grid" id="audit">
                <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Host"</th><th>"Target"</th><th>"Detail"</th></tr></thead>
                <tbody>{audit}</tbody>
            </table></div>
        </section>
    }
}

/// `operator`, or `operator on payments-*` when the role is limited to hosts.
fn role_on_hosts(role: String, hosts: Option<String>) -> String {
    match hosts {
        Some(h) => format!("{role} on {h} (viewer elsewhere)"),
        None => role,
    }
}
