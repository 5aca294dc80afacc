//! Kudu's `/api/hooks` (SPEC §6): subscribe, list, get, delete, publish, and ping.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Api, ErrorOut, Problem};
use crate::config::{HookConfig, check_event_name, redact_url};
use crate::deliver::guard;
use crate::model::Timestamp;
use crate::store::NewEvent;
use crate::store::api_hooks::{ApiHook, LastAttempt, Subscribed, hook_name};

/// A hook, as Kudu shows it (with `source`, and `events` for a config hook).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookOut {
    /// A decimal id for a hook registered through the API; the name of a config hook.
    id: String,
    /// Credentials and query values are shown as `***`.
    url: String,
    event: String,
    /// A config hook's events (it may have several).
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<String>>,
    insecure_ssl: bool,
    /// `api` or `config`.
    source: String,
    /// When it was registered (API hooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    /// When the last attempt was made.
    last_datetime: Option<String>,
    /// `OK`, `NotFound`, … (.NET's names of HTTP statuses), or `Failure` when no answer came.
    last_status: Option<String>,
    last_reason: Option<String>,
    /// The event and delivery of the last attempt.
    last_context: Option<String>,
    /// A `410 Gone` disabled it.
    disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
}

/// `POST /api/hooks`'s body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(super) struct HookIn {
    /// An absolute `http://` or `https://` URL.
    #[schema(max_length = 4096)]
    url: String,
    /// Default `PostDeployment`.
    event: Option<String>,
    insecure_ssl: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeletedOut {
    /// Absent when there was no such hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Waiting deliveries cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PublishedOut {
    event: String,
    /// One delivery id per hook of that event type.
    deliveries: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct QueuedOut {
    /// The id of the delivery queued.
    delivery: String,
}

impl QueuedOut {
    pub(super) fn new(delivery: String) -> QueuedOut {
        QueuedOut { delivery }
    }
}

/// The longest URL a hook may be registered with (it is stored and shown).
const MAX_URL: usize = 4096;

/// The body of a request, or the answer to give when it is too large or unreadable.
fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", super::MAX_BODY),
            )
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "the body cannot be read")
        }
    })
}

/// A JSON document, or `400` saying why not (never echoing the body).
fn json_of(bytes: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not JSON: {} at line {}, column {}",
                match e.classify() {
                    serde_json::error::Category::Eof => "it ends early",
                    serde_json::error::Category::Syntax => "syntax error",
                    serde_json::error::Category::Data => "unexpected data",
                    serde_json::error::Category::Io => "cannot be read",
                },
                e.line(),
                e.column()
            ),
        )
    })
}

/// `POST /api/hooks {"url", "event", "insecure_ssl"}`.
#[utoipa::path(post, path = "/hooks", tag = "hooks",
    summary = "Subscribe a URL to an event (Kudu); the same URL and event again returns the same hook",
    request_body(content = HookIn, content_type = "application/json"),
    responses(
        (status = 201, description = "The hook (new, or the one registered already)", body = HookOut),
        (status = 400, description = "Bad JSON, a bad URL or event, or a private address", body = ErrorOut),
        (status = 401, description = "No or a wrong token", body = ErrorOut),
        (status = 409, description = "The URL is registered for another event", body = ErrorOut),
        (status = 413, description = "The body is over 1 MiB", body = ErrorOut)))]
pub(super) async fn subscribe(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    subscribe_inner(api, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn subscribe_inner(
    api: Api,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body_of(body)?;
    let doc = json_of(&body)?;
    let Some(obj) = doc.as_object() else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ));
    };
    let url = match obj.get("url") {
        Some(Value::String(u)) => u.trim().to_string(),
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "url must be a string",
            ));
        }
        None => return Err(Problem::new(StatusCode::BAD_REQUEST, "url is missing")),
    };
    if url.len() > MAX_URL {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("url is longer than {MAX_URL} bytes"),
        ));
    }
    let parsed = match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "url must be an absolute http:// or https:// URL",
            ));
        }
    };
    let event = match obj.get("event") {
        None | Some(Value::Null) => "PostDeployment".to_string(),
        Some(Value::String(e)) => e.trim().to_string(),
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "event must be a string",
            ));
        }
    };
    check_event_name(&event).map_err(|why| Problem::new(StatusCode::BAD_REQUEST, why))?;
    let insecure_ssl = match obj.get("insecure_ssl") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "insecure_ssl must be true or false",
            ));
        }
    };
    if !api.settings.borrow().allow_private_targets
        && let Err(why) = guard::check_url(&parsed).await
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "refused: {why}; hooks registered through the API must call public addresses (api.allow_private_targets)"
            ),
        ));
    }
    let _one_at_a_time = api.mutate.lock().await;
    let max = api.settings.borrow().max_hooks;
    let registered = api.blocking(|s| s.api_hooks()).await?;
    let same = |h: &ApiHook| h.url.trim().eq_ignore_ascii_case(url.trim());
    if registered.len() >= max && !registered.iter().any(same) {
        crate::metrics::get().api_refused("hooks_limit");
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("{max} hooks are registered, the limit (api.max_hooks): delete one first"),
        ));
    }
    let now = Timestamp::now();
    let (u, e) = (url.clone(), event.clone());
    let done = api
        .blocking(move |s| s.subscribe_api_hook(&u, &e, insecure_ssl, now))
        .await?;
    let hook = match done {
        Subscribed::Created(h) => {
            let all = api.blocking(|s| s.api_hooks()).await?;
            api.hooks_changed(all).await;
            tracing::info!(hook = %h.name(), url = %redact_url(&parsed), event = %crate::telemetry::escape(&h.event), "hook registered through the API");
            h
        }
        Subscribed::Existing(h) => h,
        Subscribed::Conflict(h) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "this url is registered already (hook {}) for the event {:?}: delete that hook first to change its event",
                    h.id, h.event
                ),
            ));
        }
    };
    let out = api_hook_out(&api, &hook).await?;
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// `GET /api/hooks`: runtime and config hooks.
#[utoipa::path(get, path = "/hooks", tag = "hooks", summary = "Every hook: config ones, then those registered through the API",
    responses((status = 200, description = "OK", body = Vec<HookOut>), (status = 401, description = "No token or a wrong one", body = ErrorOut)))]
pub(super) async fn list(State(api): State<Api>) -> Response {
    let run = async {
        let mut all = Vec::new();
        let view = api.view.borrow().clone();
        for name in view.config_hooks.iter() {
            if let Some(h) = view.hooks.iter().find(|h| &h.name == name) {
                all.push(config_hook_out(&api, h).await?);
            }
        }
        for h in api.blocking(|s| s.api_hooks()).await? {
            all.push(api_hook_out(&api, &h).await?);
        }
        Ok::<_, Problem>(axum::Json(all).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/hooks/{id}`.
#[utoipa::path(get, path = "/hooks/{id}", tag = "hooks", summary = "One hook, with Kudu's last_* fields",
    params(("id" = String, Path, description = "A decimal id, or a config hook's name")),
    responses((status = 200, description = "OK", body = HookOut), (status = 401, description = "No token or a wrong one", body = ErrorOut), (status = 404, description = "Not found", body = ErrorOut)))]
pub(super) async fn get_one(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let run = async {
        if let Ok(n) = id.parse::<i64>() {
            let hooks = api.blocking(|s| s.api_hooks()).await?;
            if let Some(h) = hooks.iter().find(|h| h.id == n) {
                return Ok(axum::Json(api_hook_out(&api, h).await?).into_response());
            }
        }
        let view = api.view.borrow().clone();
        if view.config_hooks.contains(&id)
            && let Some(h) = view.hooks.iter().find(|h| h.name == id)
        {
            return Ok(axum::Json(config_hook_out(&api, h).await?).into_response());
        }
        Err(Problem::new(StatusCode::NOT_FOUND, "no hook has this id"))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /api/hooks/{id}`: `200` also for an unknown id (as Kudu); a config hook
/// cannot be deleted here (`409`).
#[utoipa::path(delete, path = "/hooks/{id}", tag = "hooks", summary = "Delete a hook registered through the API (200 also for an unknown id, as Kudu)",
    params(("id" = String, Path, description = "A decimal id")),
    responses((status = 200, description = "OK", body = DeletedOut), (status = 401, description = "No token or a wrong one", body = ErrorOut),
        (status = 409, description = "A config hook: remove it from the config file", body = ErrorOut)))]
pub(super) async fn remove(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let run = async {
        let is_config = api.view.borrow().config_hooks.contains(&id);
        if is_config {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!("hook {id:?} comes from the config file: remove it there and reload"),
            ));
        }
        let Ok(n) = id.parse::<i64>() else {
            return Ok(axum::Json(DeletedOut {
                id: None,
                cancelled: None,
            })
            .into_response());
        };
        let _one_at_a_time = api.mutate.lock().await;
        let now = Timestamp::now();
        let deleted = api.blocking(move |s| s.delete_api_hook(n, now)).await?;
        let Some((hook, cancelled)) = deleted else {
            return Ok(axum::Json(DeletedOut {
                id: None,
                cancelled: None,
            })
            .into_response());
        };
        let all = api.blocking(|s| s.api_hooks()).await?;
        api.hooks_changed(all).await;
        tracing::info!(hook = %hook.name(), cancelled, "hook deleted through the API; its waiting deliveries are cancelled");
        Ok(axum::Json(DeletedOut {
            id: Some(hook.id.to_string()),
            cancelled: Some(cancelled),
        })
        .into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /api/hooks/publish/{eventType}`: the body (JSON) to every hook of that event
/// type, durably, through the outbox.
#[utoipa::path(post, path = "/hooks/publish/{event}", tag = "hooks", summary = "Send a JSON document to every hook of an event type (case-insensitive), through the outbox",
    params(("event" = String, Path, description = "The event type")),
    request_body(content = Object, content_type = "application/json", description = "Any JSON document"),
    responses((status = 200, description = "OK", body = PublishedOut),
        (status = 400, description = "Not JSON, or a bad event name", body = ErrorOut),
        (status = 401, description = "No token or a wrong one", body = ErrorOut), (status = 413, description = "The document is over api.max_publish_bytes", body = ErrorOut),
        (status = 429, description = "A hook's queue holds api.max_queue_bytes; Retry-After says when to try again", body = ErrorOut)))]
pub(super) async fn publish(
    State(api): State<Api>,
    Path(event): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        check_event_name(&event).map_err(|why| Problem::new(StatusCode::BAD_REQUEST, why))?;
        let body = body_of(body)?;
        json_of(&body)?;
        let (max_body, max_queue) = {
            let s = api.settings.borrow();
            (s.max_publish_bytes, s.max_queue_bytes)
        };
        if body.len() > max_body {
            crate::metrics::get().api_refused("body_too_large");
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the document is larger than {max_body} bytes (api.max_publish_bytes)"),
            ));
        }
        let _one_at_a_time = api.mutate.lock().await;
        let view = api.view.borrow().clone();
        let host = api.settings.borrow().host_name.clone();
        let planned = crate::events::plan_published(&event, &body, &view.hooks, &host);
        let hooks: Vec<String> = planned.deliveries.iter().map(|d| d.hook.clone()).collect();
        let sizes: Vec<(String, u64)> = planned
            .deliveries
            .iter()
            .map(|d| (d.hook.clone(), d.body.len() as u64))
            .collect();
        if let Some(full) = api
            .blocking(move |s| {
                for (hook, size) in sizes {
                    if s.queued_bytes(&hook)?.saturating_add(size) > max_queue {
                        return Ok(Some(hook));
                    }
                }
                Ok(None)
            })
            .await?
        {
            return Ok(super::queue_full(&full, max_queue));
        }
        let now = Timestamp::now();
        let ids = api
            .blocking(move |s| s.commit_events(&[planned], now))
            .await?;
        api.wake(&hooks);
        tracing::info!(event = %crate::telemetry::escape(&event), deliveries = ids.len(), "event published through the API");
        Ok::<_, Problem>(
            axum::Json(PublishedOut {
                event,
                deliveries: ids,
            })
            .into_response(),
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /api/hooks/{id}/ping`: a `ping` event to this hook, through the outbox.
#[utoipa::path(post, path = "/hooks/{id}/ping", tag = "hooks", summary = "Queue a ping event for one hook",
    params(("id" = String, Path, description = "A decimal id, or a config hook's name")),
    responses((status = 200, description = "OK", body = QueuedOut), (status = 401, description = "No token or a wrong one", body = ErrorOut), (status = 404, description = "Not found", body = ErrorOut)))]
pub(super) async fn ping(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let run = async {
        let view = api.view.borrow().clone();
        let name = match id.parse::<i64>() {
            Ok(n) => hook_name(n),
            Err(_) if view.config_hooks.contains(&id) => id.clone(),
            Err(_) => return Err(Problem::new(StatusCode::NOT_FOUND, "no hook has this id")),
        };
        let Some(hook) = view.hooks.iter().find(|h| h.name == name) else {
            return Err(Problem::new(StatusCode::NOT_FOUND, "no hook has this id"));
        };
        let now = Timestamp::now();
        let host = api.settings.borrow().host_name.clone();
        let delivery = crate::events::ping(hook, &host, now);
        let event = NewEvent {
            kind: "ping".to_string(),
            site: None,
            status: None,
            deployment_serial: None,
            payload: delivery.body.clone(),
            chains: Vec::new(),
            deliveries: vec![delivery],
        };
        let ids = api
            .blocking(move |s| s.commit_events(&[event], now))
            .await?;
        api.wake(&[name]);
        Ok(axum::Json(QueuedOut {
            delivery: ids.into_iter().next().unwrap_or_default(),
        })
        .into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn api_hook_out(api: &Api, h: &ApiHook) -> Result<HookOut, Problem> {
    let (last, disabled) = last_and_disabled(api, &h.name()).await?;
    let url = url::Url::parse(&h.url).map_or_else(|_| "(invalid)".to_string(), |u| redact_url(&u));
    Ok(HookOut {
        id: h.id.to_string(),
        url,
        event: h.event.clone(),
        events: None,
        insecure_ssl: h.insecure_ssl,
        source: "api".to_string(),
        created: Some(h.created_at.rfc3339()),
        ..with_last(last.as_ref(), disabled)
    })
}

async fn config_hook_out(api: &Api, h: &HookConfig) -> Result<HookOut, Problem> {
    let (last, disabled) = last_and_disabled(api, &h.name).await?;
    Ok(HookOut {
        id: h.name.clone(),
        url: h.display_url(),
        event: h.events.first().cloned().unwrap_or_default(),
        events: Some(h.events.clone()),
        insecure_ssl: h.insecure_ssl,
        source: "config".to_string(),
        created: None,
        ..with_last(last.as_ref(), disabled)
    })
}

async fn last_and_disabled(
    api: &Api,
    name: &str,
) -> Result<(Option<LastAttempt>, Option<String>), Problem> {
    let n = name.to_string();
    api.blocking(move |s| Ok((s.last_attempt(&n)?, s.hook_disabled(&n)?)))
        .await
}

/// Kudu's `last_datetime`, `last_status` (`OK`, `NotFound`, …, or `Failure` when no
/// answer came), `last_reason` and `last_context`; plus whether a `410` disabled it
/// (the other fields are filled in by the caller).
fn with_last(last: Option<&LastAttempt>, disabled: Option<String>) -> HookOut {
    let mut out = HookOut {
        id: String::new(),
        url: String::new(),
        event: String::new(),
        events: None,
        insecure_ssl: false,
        source: String::new(),
        created: None,
        last_datetime: None,
        last_status: None,
        last_reason: None,
        last_context: None,
        disabled: disabled.is_some(),
        disabled_reason: disabled,
    };
    if let Some(l) = last {
        let (status, reason) = match l.status {
            Some(code) => {
                let phrase = StatusCode::from_u16(code)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("")
                    .to_string();
                (status_name(code), phrase)
            }
            None => (
                "Failure".to_string(),
                l.error.clone().unwrap_or_else(|| "no answer".to_string()),
            ),
        };
        out.last_datetime = Some(l.at.rfc3339());
        out.last_status = Some(status);
        out.last_reason = Some(reason);
        out.last_context = Some(format!("{} delivery {}", l.event, l.delivery));
    }
    out
}

/// .NET's `HttpStatusCode` name of a status, as Kudu reports `last_status`; the number
/// for one it has no name for.
pub(super) fn status_name(code: u16) -> String {
    let name = match code {
        100 => "Continue",
        101 => "SwitchingProtocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "NonAuthoritativeInformation",
        204 => "NoContent",
        205 => "ResetContent",
        206 => "PartialContent",
        300 => "MultipleChoices",
        301 => "MovedPermanently",
        302 => "Found",
        303 => "SeeOther",
        304 => "NotModified",
        305 => "UseProxy",
        307 => "TemporaryRedirect",
        308 => "PermanentRedirect",
        400 => "BadRequest",
        401 => "Unauthorized",
        402 => "PaymentRequired",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        407 => "ProxyAuthenticationRequired",
        408 => "RequestTimeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "LengthRequired",
        412 => "PreconditionFailed",
        413 => "RequestEntityTooLarge",
        414 => "RequestUriTooLong",
        415 => "UnsupportedMediaType",
        416 => "RequestedRangeNotSatisfiable",
        417 => "ExpectationFailed",
        421 => "MisdirectedRequest",
        422 => "UnprocessableEntity",
        423 => "Locked",
        426 => "UpgradeRequired",
        428 => "PreconditionRequired",
        429 => "TooManyRequests",
        431 => "RequestHeaderFieldsTooLarge",
        451 => "UnavailableForLegalReasons",
        500 => "InternalServerError",
        501 => "NotImplemented",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        505 => "HttpVersionNotSupported",
        511 => "NetworkAuthenticationRequired",
        _ => return code.to_string(),
    };
    name.to_string()
}
