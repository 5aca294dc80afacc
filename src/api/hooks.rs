//! Kudu's `/api/hooks` (SPEC §6): subscribe, list, get, delete, publish, and ping.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, Problem};
use crate::config::{HookConfig, check_event_name, redact_url};
use crate::deliver::guard;
use crate::model::Timestamp;
use crate::store::api_hooks::{ApiHook, LastAttempt, Subscribed, hook_name};
use crate::store::{NewDelivery, NewEvent};

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
    let json = api_hook_json(&api, &hook).await?;
    Ok((StatusCode::CREATED, axum::Json(json)).into_response())
}

/// `GET /api/hooks`: runtime and config hooks.
pub(super) async fn list(State(api): State<Api>) -> Response {
    let run = async {
        let mut all = Vec::new();
        let view = api.view.borrow().clone();
        for name in view.config_hooks.iter() {
            if let Some(h) = view.hooks.iter().find(|h| &h.name == name) {
                all.push(config_hook_json(&api, h).await?);
            }
        }
        for h in api.blocking(|s| s.api_hooks()).await? {
            all.push(api_hook_json(&api, &h).await?);
        }
        Ok::<_, Problem>(axum::Json(Value::Array(all)).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/hooks/{id}`.
pub(super) async fn get_one(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let run = async {
        if let Ok(n) = id.parse::<i64>() {
            let hooks = api.blocking(|s| s.api_hooks()).await?;
            if let Some(h) = hooks.iter().find(|h| h.id == n) {
                return Ok(axum::Json(api_hook_json(&api, h).await?).into_response());
            }
        }
        let view = api.view.borrow().clone();
        if view.config_hooks.contains(&id)
            && let Some(h) = view.hooks.iter().find(|h| h.name == id)
        {
            return Ok(axum::Json(config_hook_json(&api, h).await?).into_response());
        }
        Err(Problem::new(StatusCode::NOT_FOUND, "no hook has this id"))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /api/hooks/{id}`: `200` also for an unknown id (as Kudu); a config hook
/// cannot be deleted here (`409`).
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
            return Ok(axum::Json(json!({})).into_response());
        };
        let _one_at_a_time = api.mutate.lock().await;
        let now = Timestamp::now();
        let deleted = api.blocking(move |s| s.delete_api_hook(n, now)).await?;
        let Some((hook, cancelled)) = deleted else {
            return Ok(axum::Json(json!({})).into_response());
        };
        let all = api.blocking(|s| s.api_hooks()).await?;
        api.hooks_changed(all).await;
        tracing::info!(hook = %hook.name(), cancelled, "hook deleted through the API; its waiting deliveries are cancelled");
        Ok(axum::Json(json!({"id": hook.id.to_string(), "cancelled": cancelled})).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /api/hooks/publish/{eventType}`: the body (JSON) to every hook of that event
/// type, durably, through the outbox.
pub(super) async fn publish(
    State(api): State<Api>,
    Path(event): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        check_event_name(&event).map_err(|why| Problem::new(StatusCode::BAD_REQUEST, why))?;
        let body = body_of(body)?;
        json_of(&body)?;
        let _one_at_a_time = api.mutate.lock().await;
        let view = api.view.borrow().clone();
        let planned = crate::events::plan_published(&event, &body, &view.hooks);
        let hooks: Vec<String> = planned.deliveries.iter().map(|d| d.hook.clone()).collect();
        let now = Timestamp::now();
        let ids = api
            .blocking(move |s| s.commit_events(&[planned], now))
            .await?;
        wake(&view, &hooks);
        tracing::info!(event = %crate::telemetry::escape(&event), deliveries = ids.len(), "event published through the API");
        Ok::<_, Problem>(axum::Json(json!({"event": event, "deliveries": ids})).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /api/hooks/{id}/ping`: a `ping` event to this hook, through the outbox.
pub(super) async fn ping(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let run = async {
        let view = api.view.borrow().clone();
        let name = match id.parse::<i64>() {
            Ok(n) => hook_name(n),
            Err(_) if view.config_hooks.contains(&id) => id.clone(),
            Err(_) => return Err(Problem::new(StatusCode::NOT_FOUND, "no hook has this id")),
        };
        if !view.hooks.iter().any(|h| h.name == name) {
            return Err(Problem::new(StatusCode::NOT_FOUND, "no hook has this id"));
        }
        let now = Timestamp::now();
        let host = api.settings.borrow().host_name.clone();
        let body = crate::events::ping_body(&name, &host, now);
        let event = NewEvent {
            kind: "ping".to_string(),
            site: None,
            status: None,
            deployment_serial: None,
            payload: body.clone(),
            deliveries: vec![NewDelivery {
                hook: name.clone(),
                body,
            }],
        };
        let ids = api
            .blocking(move |s| s.commit_events(&[event], now))
            .await?;
        wake(&view, &[name]);
        Ok(axum::Json(json!({"delivery": ids.first()})).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

fn wake(view: &super::HookView, hooks: &[String]) {
    for h in hooks {
        if let Some(w) = view.wakes.get(h) {
            w.notify_one();
        }
    }
}

async fn api_hook_json(api: &Api, h: &ApiHook) -> Result<Value, Problem> {
    let name = h.name();
    let (last, disabled) = last_and_disabled(api, &name).await?;
    let url = url::Url::parse(&h.url).map_or_else(|_| "(invalid)".to_string(), |u| redact_url(&u));
    let mut v = json!({
        "id": h.id.to_string(),
        "url": url,
        "event": h.event,
        "insecure_ssl": h.insecure_ssl,
        "source": "api",
        "created": h.created_at.rfc3339(),
    });
    add_last(&mut v, last.as_ref(), disabled);
    Ok(v)
}

async fn config_hook_json(api: &Api, h: &HookConfig) -> Result<Value, Problem> {
    let (last, disabled) = last_and_disabled(api, &h.name).await?;
    let mut v = json!({
        "id": h.name,
        "url": h.display_url(),
        "event": h.events.first().cloned().unwrap_or_default(),
        "events": h.events,
        "insecure_ssl": h.insecure_ssl,
        "source": "config",
    });
    add_last(&mut v, last.as_ref(), disabled);
    Ok(v)
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
/// answer came), `last_reason` and `last_context`; plus whether a `410` disabled it.
fn add_last(v: &mut Value, last: Option<&LastAttempt>, disabled: Option<String>) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let (datetime, status, reason, context) = match last {
        None => (Value::Null, Value::Null, Value::Null, Value::Null),
        Some(l) => {
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
            (
                json!(l.at.rfc3339()),
                json!(status),
                json!(reason),
                json!(format!("{} delivery {}", l.event, l.delivery)),
            )
        }
    };
    obj.insert("last_datetime".into(), datetime);
    obj.insert("last_status".into(), status);
    obj.insert("last_reason".into(), reason);
    obj.insert("last_context".into(), context);
    obj.insert("disabled".into(), json!(disabled.is_some()));
    if let Some(why) = disabled {
        obj.insert("disabled_reason".into(), json!(why));
    }
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
