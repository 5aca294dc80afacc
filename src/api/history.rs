//! Beyond Kudu: deployments (Kudu's deployment shape), a hook's deliveries, one
//! delivery with every attempt, and redelivery.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{Api, ErrorOut, Problem};
use crate::infer::model::Deployment;
use crate::model::{Status, Timestamp};
use crate::store::api_hooks::{StoredDeployment, hook_name};
use crate::store::query::DeliveryRow;

/// At most this many rows in a listing.
const MAX_LIST: usize = 1000;

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only this site's.
    site: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
}

/// A deployment in Kudu's shape (`status` is Kudu's number: 0 pending, 1 building,
/// 2 deploying, 3 failed, 4 success), with deployhook's additions.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeploymentOut {
    id: String,
    status: u8,
    pub(super) status_name: String,
    status_text: String,
    author_email: Option<String>,
    author: Option<String>,
    message: Option<String>,
    deployer: Option<String>,
    progress: String,
    received_time: String,
    start_time: Option<String>,
    end_time: Option<String>,
    complete: bool,
    /// The site's newest successful deployment (in a listing).
    active: bool,
    is_temp: bool,
    is_readonly: bool,
    pub(super) site_name: String,
    pub(super) serial: u64,
    release: Option<String>,
    branch: Option<String>,
    rollback: bool,
    last_change: String,
}

/// A delivery: one event to one hook.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryOut {
    id: String,
    /// The hook's API id.
    hook: String,
    event: String,
    /// `pending`, `sending`, `delivered`, `dead` or `cancelled`.
    state: String,
    attempts: u32,
    created: String,
    last_status: Option<u16>,
    last_error: Option<String>,
}

/// One HTTP request of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AttemptOut {
    n: u32,
    started: String,
    duration_ms: u64,
    /// Secrets are never recorded (`Authorization` left out, custom header values `***`).
    request_headers: Vec<(String, String)>,
    response_status: Option<u16>,
    response_headers: Vec<(String, String)>,
    /// At most 64 KiB, as text.
    response_body: String,
    error: Option<String>,
}

/// A delivery with its request body and every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryDetailOut {
    #[serde(flatten)]
    delivery: DeliveryOut,
    /// `{"json": …}` when the body is JSON, else `{"base64": "…"}`.
    #[schema(value_type = Object)]
    pub(super) request_body: Value,
    next_attempt: String,
    attempt_list: Vec<AttemptOut>,
}

/// The query's site and limit, or `400` as JSON (a repeated or undecodable parameter,
/// a limit that is not a number).
fn list_params(
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<(Option<String>, usize), Problem> {
    let Query(q) = q.map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "the query string cannot be read (a parameter given twice?)",
        )
    })?;
    let limit = q.limit()?;
    Ok((q.site, limit))
}

impl ListQuery {
    /// `limit`, 100 by default, at most `MAX_LIST`.
    fn limit(&self) -> Result<usize, Problem> {
        match &self.limit {
            None => Ok(100),
            Some(l) => l
                .parse::<usize>()
                .map(|n| n.clamp(1, MAX_LIST))
                .map_err(|_| {
                    Problem::new(StatusCode::BAD_REQUEST, "limit must be a positive number")
                }),
        }
    }
}

/// Kudu's `DeployStatus` numbers.
fn kudu_status(s: Status) -> u8 {
    match s {
        Status::Pending => 0,
        Status::Building => 1,
        Status::Deploying => 2,
        Status::Failed => 3,
        Status::Success => 4,
    }
}

fn deployment_out(row: &StoredDeployment, active: bool) -> Option<DeploymentOut> {
    let d = serde_json::from_str::<Deployment>(&row.data).ok()?;
    let commit = d.commit.as_ref();
    Some(DeploymentOut {
        id: d.id.clone(),
        status: kudu_status(d.status),
        status_name: d.status.as_str().to_string(),
        status_text: d.status_text.clone(),
        author_email: commit.map(|c| c.email.clone()),
        author: commit.map(|c| c.author.clone()),
        message: commit.map(|c| c.message.clone()),
        deployer: d.deployer.clone(),
        progress: d.progress.clone(),
        received_time: d.received.rfc3339(),
        start_time: d.started.map(|t| t.rfc3339()),
        end_time: d.ended.map(|t| t.rfc3339()),
        complete: d.status.is_terminal(),
        active,
        is_temp: false,
        is_readonly: true,
        site_name: row.site.clone(),
        serial: row.serial,
        release: d.release.clone(),
        branch: d.branch.clone(),
        rollback: d.rollback,
        last_change: row.updated_at.rfc3339(),
    })
}

/// Marks, per site, the newest successful deployment in `rows` (newest first) active.
/// A record that does not parse (a newer version's) is left out.
pub(super) fn with_active(rows: &[StoredDeployment]) -> Vec<DeploymentOut> {
    let mut seen = std::collections::BTreeSet::new();
    rows.iter()
        .filter_map(|r| {
            let success = serde_json::from_str::<Deployment>(&r.data)
                .is_ok_and(|d| d.status == Status::Success);
            let active = success && seen.insert(r.site.clone());
            deployment_out(r, active)
        })
        .collect()
}

/// `GET /api/deployments[?site=S&limit=N]`: newest first.
#[utoipa::path(get, path = "/deployments", tag = "deployments", summary = "Deployments, newest first",
    params(ListQuery),
    responses((status = 200, description = "OK", body = Vec<DeploymentOut>), (status = 400, description = "Bad request", body = ErrorOut), (status = 401, description = "No token or a wrong one", body = ErrorOut)))]
pub(super) async fn deployments(
    State(api): State<Api>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let (site, limit) = list_params(q)?;
        let rows = api
            .blocking(move |s| s.deployments(site.as_deref(), None, limit))
            .await?;
        Ok::<_, Problem>(axum::Json(with_active(&rows)).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/deployments/{id}[?site=S]`: the newest deployment with this id.
#[utoipa::path(get, path = "/deployments/{id}", tag = "deployments", summary = "The newest deployment with this id",
    params(("id" = String, Path, description = "The deployment's id (commit SHA, release or Kudu id)"), ListQuery),
    responses((status = 200, description = "OK", body = DeploymentOut), (status = 400, description = "Bad request", body = ErrorOut), (status = 401, description = "No token or a wrong one", body = ErrorOut), (status = 404, description = "Not found", body = ErrorOut)))]
pub(super) async fn deployment(
    State(api): State<Api>,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let run = async {
        // The site narrows the search; the limit is checked but one is enough.
        let (site, _) = list_params(q)?;
        let rows = api
            .blocking(move |s| s.deployments(site.as_deref(), Some(&id), 1))
            .await?;
        rows.first()
            .and_then(|r| deployment_out(r, false))
            .map(|d| axum::Json(d).into_response())
            .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no deployment has this id"))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

pub(super) fn delivery_out(r: &DeliveryRow) -> DeliveryOut {
    DeliveryOut {
        id: r.id.clone(),
        hook: api_id(&r.hook),
        event: r.event.clone(),
        state: r.state.as_str().to_string(),
        attempts: r.attempts,
        created: r.created_at.rfc3339(),
        last_status: r.last_status,
        last_error: r.last_error.clone(),
    }
}

/// The API id of a hook's run-time name (`api-7` → `7`; a config hook's is its name).
pub(super) fn api_id(name: &str) -> String {
    if crate::config::is_api_hook_name(name) {
        name.trim_start_matches("api-").to_string()
    } else {
        name.to_string()
    }
}

/// The run-time name of an API id, if such a hook runs or ran.
pub(super) fn run_name(id: &str) -> String {
    match id.parse::<i64>() {
        Ok(n) => hook_name(n),
        Err(_) => id.to_string(),
    }
}

/// `GET /api/hooks/{id}/deliveries[?limit=N]`: newest first.
#[utoipa::path(get, path = "/hooks/{id}/deliveries", tag = "deliveries", summary = "A hook's deliveries, newest first",
    params(("id" = String, Path, description = "A decimal id, or a config hook's name"), ListQuery),
    responses((status = 200, description = "OK", body = Vec<DeliveryOut>), (status = 400, description = "Bad request", body = ErrorOut), (status = 401, description = "No token or a wrong one", body = ErrorOut), (status = 404, description = "Not found", body = ErrorOut)))]
pub(super) async fn hook_deliveries(
    State(api): State<Api>,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let (_, limit) = list_params(q)?;
        let name = run_name(&id);
        let known = api.view.borrow().hooks.iter().any(|h| h.name == name);
        let rows = api
            .blocking(move |s| s.list_deliveries(Some(&name), false, limit))
            .await?;
        if !known && rows.is_empty() {
            return Err(Problem::new(StatusCode::NOT_FOUND, "no hook has this id"));
        }
        Ok(axum::Json(rows.iter().map(delivery_out).collect::<Vec<_>>()).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// A body as JSON when it is JSON, else as base64.
fn body_json(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => json!({"json": v}),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(body)}),
    }
}

/// `GET /api/deliveries/{id}`: the request and every attempt.
#[utoipa::path(get, path = "/deliveries/{id}", tag = "deliveries", summary = "One delivery: its request and every attempt",
    params(("id" = String, Path, description = "The delivery id (msg_…)")),
    responses((status = 200, description = "OK", body = DeliveryDetailOut), (status = 401, description = "No token or a wrong one", body = ErrorOut), (status = 404, description = "Not found", body = ErrorOut)))]
pub(super) async fn delivery(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let found = match api.blocking(move |s| s.delivery_detail(&id)).await {
        Ok(d) => d,
        Err(p) => return p.into_response(),
    };
    let Some(d) = found else {
        return Problem::new(StatusCode::NOT_FOUND, "no delivery has this id").into_response();
    };
    axum::Json(detail_out(&d)).into_response()
}

/// A delivery with its request (the callback token redacted) and every attempt: what
/// `GET /api/deliveries/{id}` answers and the console shows.
pub(super) fn detail_out(d: &crate::store::query::DeliveryDetail) -> DeliveryDetailOut {
    let attempt_list = d
        .attempts
        .iter()
        .map(|a| {
            let r = &a.attempt;
            AttemptOut {
                n: a.n,
                started: r.started_at.rfc3339(),
                duration_ms: u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
                request_headers: r.request_headers.clone(),
                response_status: r.response_status,
                response_headers: r.response_headers.clone(),
                response_body: String::from_utf8_lossy(&r.response_body).into_owned(),
                error: r.error.clone(),
            }
        })
        .collect();
    DeliveryDetailOut {
        delivery: delivery_out(&d.row),
        request_body: body_json(&crate::events::chains::redact_callback(&d.body)),
        next_attempt: d.next_attempt_at.rfc3339(),
        attempt_list,
    }
}

/// `POST /api/deliveries/{id}/redeliver`: a new delivery of the same event and body to
/// the same hook (which must still run).
#[utoipa::path(post, path = "/deliveries/{id}/redeliver", tag = "deliveries", summary = "Queue a new delivery of the same event and body",
    params(("id" = String, Path, description = "The delivery id (msg_…)")),
    responses((status = 202, description = "Queued", body = super::hooks::QueuedOut), (status = 401, description = "No token or a wrong one", body = ErrorOut), (status = 404, description = "Not found", body = ErrorOut),
        (status = 409, description = "Its hook no longer exists", body = ErrorOut),
        (status = 429, description = "The hook's queue holds api.max_queue_bytes; Retry-After says when to try again", body = ErrorOut)))]
pub(super) async fn redeliver(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let run = async {
        let lookup = id.clone();
        let d = api
            .blocking(move |s| s.delivery_detail(&lookup))
            .await?
            .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no delivery has this id"))?;
        let _one_at_a_time = api.mutate.lock().await;
        let view = api.view.borrow().clone();
        if !view.hooks.iter().any(|h| h.name == d.row.hook) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "the hook of this delivery no longer exists",
            ));
        }
        let max_queue = api.settings.borrow().max_queue_bytes;
        let (hook, size) = (d.row.hook.clone(), d.body.len() as u64);
        let queued = api.blocking(move |s| s.queued_bytes(&hook)).await?;
        if queued.saturating_add(size) > max_queue {
            return Ok(super::queue_full(&d.row.hook, max_queue));
        }
        let now = Timestamp::now();
        let new = api
            .blocking(move |s| s.redeliver(&id, now))
            .await?
            .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no delivery has this id"))?;
        if let Some(w) = view.wakes.get(&d.row.hook) {
            w.notify_one();
        }
        Ok::<_, Problem>(
            (
                StatusCode::ACCEPTED,
                axum::Json(super::hooks::QueuedOut::new(new)),
            )
                .into_response(),
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
