//! The web console at `/` (issue 25): pages rendered on the server from the same data as
//! the JSON API (`history::with_active`, `delivery_out`, `detail_out`, the store's
//! `DeliveryFilter`), so every view works with JavaScript off; `console.js` only keeps a
//! page live through server-sent events (`/ui/events`), which poll the outbox once a
//! second while a page is open and not at all otherwise.
//!
//! Everything shown comes from outside (site and hook names, commit messages, bodies):
//! the templates are minijinja's with HTML auto-escaping, no value is marked safe, and the
//! pages send a Content-Security-Policy that runs only our own script.
//!
//! Auth is the API's: the token as `Authorization` (Bearer, or Basic), or a session made
//! by the login form (an `HttpOnly`, `SameSite=Strict` cookie naming a random session id
//! kept in memory). Without a token in the config (a loopback or unix-socket API) there is
//! no login. Every form that changes something carries a CSRF token (the session's, or one
//! derived from a per-process secret) and is refused from another site.

mod dora;
mod log;
mod session;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::history::{delivery_out, with_active};
use super::{Api, Problem};
use crate::model::Timestamp;
use crate::store::query::DeliveryFilter;
pub(super) use session::{Console, is_console_path, session_of};

const BASE: &str = include_str!("base.html");
const OVERVIEW: &str = include_str!("overview.html");
const DELIVERIES: &str = include_str!("deliveries.html");
const DELIVERY: &str = include_str!("delivery.html");
const RETRY: &str = include_str!("retry.html");
const DEPLOYMENT: &str = include_str!("deployment.html");
const LOGIN: &str = include_str!("login.html");
const DORA: &str = include_str!("dora.html");
const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// The console's routes (outside `/api`: the JSON API holds `/hooks`, `/deliveries`, …).
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(overview))
        .route("/ui/deliveries", get(log::deliveries))
        .route("/ui/dora", get(dora::dora))
        .route("/ui/deliveries/{id}", get(log::delivery))
        .route("/ui/deliveries/{id}/redeliver", post(log::redeliver))
        .route("/ui/retry", get(log::retry_confirm).post(log::retry))
        .route("/ui/deployments/{site}/{serial}", get(deployment))
        .route("/ui/hooks/{name}/ping", post(ping))
        .route("/ui/hooks/{name}/enable", post(enable))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/events", get(events))
        .route(
            "/ui/console.css",
            get(|| asset(CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/ui/console.js",
            get(|| asset(JS, "text/javascript; charset=utf-8")),
        )
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The templates, parsed once (on the first page asked for, not at start-up).
static TEMPLATES: std::sync::LazyLock<minijinja::Environment<'static>> =
    std::sync::LazyLock::new(templates);

fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.add_filter("first_line", |s: String| {
        s.lines().next().unwrap_or_default().to_string()
    });
    env.add_filter("urlencode", |s: String| urlencode(&s));
    // `.html` names: every value is HTML-escaped (minijinja's default for them).
    for (name, text) in [
        ("base.html", BASE),
        ("overview.html", OVERVIEW),
        ("deliveries.html", DELIVERIES),
        ("delivery.html", DELIVERY),
        ("retry.html", RETRY),
        ("deployment.html", DEPLOYMENT),
        ("login.html", LOGIN),
        ("dora.html", DORA),
    ] {
        if let Err(e) = env.add_template(name, text) {
            tracing::error!(error = %e, template = name, "a console template does not parse (a bug)");
        }
    }
    env
}

/// A value for a template.
pub(super) fn v<T: Serialize + ?Sized>(t: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(t))
}

/// A rendered page with the console's headers.
pub(super) fn page(status: StatusCode, name: &str, context: minijinja::Value) -> Response {
    let html = TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(context))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, page = name, "a console page cannot be rendered (a bug)");
            "<!doctype html><title>deployhook</title><p>This page cannot be shown.</p>".to_string()
        });
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// What every page needs: its CSRF token, whether a session can log out, the host.
#[derive(Serialize)]
pub(super) struct Frame {
    csrf: String,
    logout: bool,
    host: String,
    active: &'static str,
}

pub(super) fn frame(api: &Api, headers: &HeaderMap, active: &'static str) -> Frame {
    Frame {
        csrf: api.console.csrf_for(session_of(headers).as_deref()),
        logout: session_of(headers).is_some_and(|s| api.console.valid(&s)),
        host: api.settings.borrow().host_name.clone(),
        active,
    }
}

pub(super) fn problem_page(api: &Api, headers: &HeaderMap, p: &Problem) -> Response {
    page(
        p.status,
        "base.html",
        minijinja::context! { frame => v(&frame(api, headers, "")), error => v(&p.message) },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
struct OverviewQuery {
    site: Option<String>,
    status: Option<String>,
}

/// A site as the overview shows it.
#[derive(Serialize)]
struct SiteView {
    name: String,
    live: Option<String>,
    commit: Option<String>,
    active: Vec<ActiveView>,
}

#[derive(Serialize)]
struct ActiveView {
    id: String,
    status: String,
    elapsed: String,
}

/// A hook's health.
#[derive(Serialize)]
struct HookView {
    name: String,
    queue: u64,
    oldest: Option<String>,
    retrying: u64,
    dead: u64,
    delivered: u64,
    failures_in_a_row: u64,
    last: String,
    last_ok: bool,
    next_retry: Option<String>,
    disabled: Option<String>,
}

fn ago(t: Timestamp, now: Timestamp) -> String {
    let secs = now.since(t).as_secs();
    crate::model::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

async fn overview(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<OverviewQuery>, QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    let hooks = api.hook_names();
    let site = q.site.clone().filter(|s| !s.is_empty());
    let read = api
        .blocking(move |s| {
            let now = Timestamp::now();
            let mut sites = Vec::new();
            for (name, state, _) in s.site_states()? {
                let live = state.as_ref().and_then(|st| st.live.as_ref());
                sites.push(SiteView {
                    name,
                    live: live.map(|l| l.release.clone()),
                    commit: live.map(|l| l.id.clone()),
                    active: state
                        .iter()
                        .flat_map(|st| st.active.iter())
                        .map(|d| ActiveView {
                            id: d.id.clone(),
                            status: d.status.as_str().to_string(),
                            elapsed: ago(d.received, now),
                        })
                        .collect(),
                });
            }
            let rows = s.deployments(site.as_deref(), None, 100)?;
            let mut hook_views = Vec::new();
            for name in &hooks {
                let h = s.hook_summary(name)?;
                let (last, last_ok) = match (h.last_attempt_at, h.last_status, &h.last_error) {
                    (None, _, _) => ("never attempted".to_string(), true),
                    (Some(t), Some(code), _) => (
                        format!("HTTP {code}, {} ago", ago(t, now)),
                        (200..300).contains(&code),
                    ),
                    (Some(t), None, Some(e)) => (format!("{e}, {} ago", ago(t, now)), false),
                    (Some(t), None, None) => (format!("no answer, {} ago", ago(t, now)), false),
                };
                hook_views.push(HookView {
                    name: name.clone(),
                    queue: h.pending,
                    oldest: h.oldest_pending.map(|t| ago(t, now)),
                    retrying: h.retrying,
                    dead: h.dead,
                    delivered: h.delivered,
                    failures_in_a_row: h.failures_in_a_row,
                    last,
                    last_ok,
                    next_retry: h.next_retry.map(|t| {
                        if t > now {
                            format!(
                                "in {}",
                                crate::model::format_duration(std::time::Duration::from_secs(
                                    t.since(now).as_secs()
                                ))
                            )
                        } else {
                            "now".to_string()
                        }
                    }),
                    disabled: h.disabled,
                });
            }
            let runs: Vec<serde_json::Value> = s
                .chain_runs(10)?
                .into_iter()
                .map(|r| {
                    serde_json::json!({
                        "chain": r.chain, "id": r.id, "site": r.site, "state": r.state,
                        "created": r.created_at,
                        "steps": r.steps.iter().map(|st| serde_json::json!({
                            "hook": st.hook, "state": st.state, "description": st.description,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok((sites, rows, hook_views, runs))
        })
        .await;
    let (sites, rows, hook_views, runs) = match read {
        Ok(r) => r,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let status = q.status.clone().filter(|s| !s.is_empty());
    // How long each took (start, or first seen, to its end; so far, while it runs).
    let now = Timestamp::now();
    let took: std::collections::BTreeMap<(String, u64), String> = rows
        .iter()
        .filter_map(|r| {
            let d = serde_json::from_str::<crate::infer::model::Deployment>(&r.data).ok()?;
            let from = d.started.unwrap_or(d.received);
            let to = d.ended.unwrap_or(now);
            let secs = to.since(from).as_secs();
            let text = crate::model::format_duration(std::time::Duration::from_secs(secs));
            Some(((r.site.clone(), r.serial), text.to_string()))
        })
        .collect();
    let deployments: Vec<serde_json::Value> = with_active(&rows)
        .into_iter()
        .filter(|d| status.as_deref().is_none_or(|s| d.status_name == s))
        .filter_map(|d| {
            let key = (d.site_name.clone(), d.serial);
            let mut v = serde_json::to_value(&d).ok()?;
            if let Some(t) = took.get(&key) {
                v["duration"] = serde_json::Value::String(t.clone());
            }
            Some(v)
        })
        .collect();
    page(
        StatusCode::OK,
        "overview.html",
        minijinja::context! {
            frame => v(&frame(&api, &headers, "overview")),
            sites => v(&sites),
            deployments => v(&deployments),
            hooks => v(&hook_views),
            runs => v(&runs),
            site => v(&q.site.unwrap_or_default()),
            status => v(&q.status.unwrap_or_default()),
            statuses => v(&["pending", "building", "deploying", "success", "failed"]),
        },
    )
}

async fn deployment(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((site, serial)): Path<(String, u64)>,
) -> Response {
    let (site_q, site_f) = (site.clone(), site.clone());
    let read = api
        .blocking(move |s| {
            let rows: Vec<_> = s
                .deployments(Some(&site_q), None, 1000)?
                .into_iter()
                .filter(|r| r.serial == serial)
                .collect();
            let transitions = s.transitions(&site_q, serial)?;
            let payload = s.latest_payload(&site_q, serial)?;
            let deliveries = s.find_deliveries(
                &DeliveryFilter {
                    site: Some(site_f),
                    deployment: Some(serial),
                    ..DeliveryFilter::default()
                },
                500,
            )?;
            Ok((rows, transitions, payload, deliveries))
        })
        .await;
    let (rows, transitions, payload, deliveries) = match read {
        Ok(r) => r,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let Some(d) = with_active(&rows).into_iter().next() else {
        let p = Problem::new(StatusCode::NOT_FOUND, "No deployment has this number.");
        return problem_page(&api, &headers, &p);
    };
    let payload: serde_json::Value = payload
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let transitions: Vec<serde_json::Value> = transitions
        .iter()
        .map(|(at, status)| serde_json::json!({"at": at.rfc3339(), "status": status}))
        .collect();
    page(
        StatusCode::OK,
        "deployment.html",
        minijinja::context! {
            frame => v(&frame(&api, &headers, "overview")),
            d => v(&d),
            commits => v(&payload["commits"]),
            previous => v(&payload["previousId"]),
            transitions => v(&transitions),
            deliveries => v(&deliveries.iter().map(delivery_out).collect::<Vec<_>>()),
        },
    )
}

async fn ping(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(p) = check_form(&api, &headers, &form) {
        return problem_page(&api, &headers, &p);
    }
    let resp = super::hooks::ping(State(api.clone()), Path(super::history::api_id(&name))).await;
    if !resp.status().is_success() {
        let p = Problem::new(resp.status(), "No such hook runs now.");
        return problem_page(&api, &headers, &p);
    }
    Redirect::to(&format!("/ui/deliveries?hook={}", urlencode(&name))).into_response()
}

async fn enable(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(p) = check_form(&api, &headers, &form) {
        return problem_page(&api, &headers, &p);
    }
    let hook = name.clone();
    if let Err(p) = api.blocking(move |s| s.enable_hook(&hook)).await {
        return problem_page(&api, &headers, &p);
    }
    api.wake(std::slice::from_ref(&name));
    Redirect::to("/").into_response()
}

/// A form's CSRF token, and the request's own word on where it comes from.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Csrf {
    #[serde(default)]
    pub(super) csrf: String,
}

/// Refuses a form from another site, or without this session's CSRF token.
pub(super) fn check_form(api: &Api, headers: &HeaderMap, form: &Csrf) -> Result<(), Problem> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let expected = api.console.csrf_for(session_of(headers).as_deref());
    if cross_site || !session::same(form.csrf.as_bytes(), expected.as_bytes()) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "This form did not come from this console (reload the page and try again).",
        ));
    }
    Ok(())
}

pub(super) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Debug, Default, serde::Deserialize)]
struct LoginQuery {
    failed: Option<String>,
}

async fn login_form(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    let needed = api.settings.borrow().token.is_some();
    page(
        StatusCode::OK,
        "login.html",
        minijinja::context! {
            frame => v(&frame(&api, &headers, "")),
            needed => v(&needed),
            failed => v(&q.failed.is_some()),
        },
    )
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(api): State<Api>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Problem::new(StatusCode::FORBIDDEN, "not from another site").into_response();
    }
    let token = api.settings.borrow().token.clone();
    let Some(token) = token else {
        return Redirect::to("/").into_response();
    };
    if !super::auth::accepts(&token, form.token.trim()) {
        return Redirect::to("/ui/login?failed=1").into_response();
    }
    let id = api.console.open();
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session::COOKIE,
        session::LIFETIME.as_secs()
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(api): State<Api>, headers: HeaderMap, Form(form): Form<Csrf>) -> Response {
    if let Err(p) = check_form(&api, &headers, &form) {
        return problem_page(&api, &headers, &p);
    }
    if let Some(s) = session_of(&headers) {
        api.console.close(&s);
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "deployhook_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

/// Server-sent events: `change` whenever the outbox changed (a deployment, a delivery,
/// an attempt). The outbox is looked at once a second for each open page, and never
/// when none is open.
async fn events(State(api): State<Api>) -> Response {
    let stream =
        futures_util::stream::unfold((api, None::<(i64, i64)>), |(api, last)| async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let now = api.blocking(|s| s.change_marker()).await.ok();
                if now.is_some() && now != last {
                    let event = Event::default().event("change").data("changed");
                    return Some((Ok::<_, std::convert::Infallible>(event), (api, now)));
                }
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
