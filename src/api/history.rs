//! Beyond Kudu: deployments (Kudu's deployment shape), a hook's deliveries, one
//! delivery with every attempt, and redelivery.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::{Api, Problem};
use crate::infer::model::Deployment;
use crate::model::{Status, Timestamp};
use crate::store::api_hooks::{StoredDeployment, hook_name};
use crate::store::query::DeliveryRow;

/// At most this many rows in a listing.
const MAX_LIST: usize = 1000;

#[derive(Debug, serde::Deserialize)]
pub(super) struct ListQuery {
    site: Option<String>,
    limit: Option<String>,
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

fn deployment_json(row: &StoredDeployment, active: bool) -> Value {
    let Ok(d) = serde_json::from_str::<Deployment>(&row.data) else {
        return json!({"site_name": row.site, "serial": row.serial, "error": "unreadable record"});
    };
    let commit = d.commit.as_ref();
    json!({
        "id": d.id,
        "status": kudu_status(d.status),
        "status_name": d.status.as_str(),
        "status_text": d.status_text,
        "author_email": commit.map(|c| c.email.clone()),
        "author": commit.map(|c| c.author.clone()),
        "message": commit.map(|c| c.message.clone()),
        "deployer": d.deployer,
        "progress": d.progress,
        "received_time": d.received.rfc3339(),
        "start_time": d.started.map(|t| t.rfc3339()),
        "end_time": d.ended.map(|t| t.rfc3339()),
        "complete": d.status.is_terminal(),
        "active": active,
        "is_temp": false,
        "is_readonly": true,
        "site_name": row.site,
        "serial": row.serial,
        "release": d.release,
        "branch": d.branch,
        "rollback": d.rollback,
        "last_change": row.updated_at.rfc3339(),
    })
}

/// Marks, per site, the newest successful deployment in `rows` (newest first) active.
fn with_active(rows: &[StoredDeployment]) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    rows.iter()
        .map(|r| {
            let success = serde_json::from_str::<Deployment>(&r.data)
                .is_ok_and(|d| d.status == Status::Success);
            let active = success && seen.insert(r.site.clone());
            deployment_json(r, active)
        })
        .collect()
}

/// `GET /api/deployments[?site=S&limit=N]`: newest first.
pub(super) async fn deployments(State(api): State<Api>, Query(q): Query<ListQuery>) -> Response {
    let limit = match q.limit() {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let site = q.site.clone();
    match api
        .blocking(move |s| s.deployments(site.as_deref(), None, limit))
        .await
    {
        Ok(rows) => axum::Json(Value::Array(with_active(&rows))).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `GET /api/deployments/{id}[?site=S]`: the newest deployment with this id.
pub(super) async fn deployment(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let site = q.site.clone();
    let rows = match api
        .blocking(move |s| s.deployments(site.as_deref(), Some(&id), 1))
        .await
    {
        Ok(rows) => rows,
        Err(p) => return p.into_response(),
    };
    match rows.first() {
        Some(r) => axum::Json(deployment_json(r, false)).into_response(),
        None => Problem::new(StatusCode::NOT_FOUND, "no deployment has this id").into_response(),
    }
}

fn delivery_json(r: &DeliveryRow) -> Value {
    json!({
        "id": r.id,
        "hook": api_id(&r.hook),
        "event": r.event,
        "state": r.state.as_str(),
        "attempts": r.attempts,
        "created": r.created_at.rfc3339(),
        "last_status": r.last_status,
        "last_error": r.last_error,
    })
}

/// The API id of a hook's run-time name (`api-7` → `7`; a config hook's is its name).
fn api_id(name: &str) -> String {
    if crate::config::is_api_hook_name(name) {
        name.trim_start_matches("api-").to_string()
    } else {
        name.to_string()
    }
}

/// The run-time name of an API id, if such a hook runs or ran.
fn run_name(id: &str) -> String {
    match id.parse::<i64>() {
        Ok(n) => hook_name(n),
        Err(_) => id.to_string(),
    }
}

/// `GET /api/hooks/{id}/deliveries[?limit=N]`: newest first.
pub(super) async fn hook_deliveries(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = match q.limit() {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let name = run_name(&id);
    let known = api.view.borrow().hooks.iter().any(|h| h.name == name);
    let rows = match api
        .blocking(move |s| s.list_deliveries(Some(&name), false, limit))
        .await
    {
        Ok(rows) => rows,
        Err(p) => return p.into_response(),
    };
    if !known && rows.is_empty() {
        return Problem::new(StatusCode::NOT_FOUND, "no hook has this id").into_response();
    }
    axum::Json(Value::Array(rows.iter().map(delivery_json).collect())).into_response()
}

/// A body as JSON when it is JSON, else as base64.
fn body_json(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => json!({"json": v}),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(body)}),
    }
}

/// `GET /api/deliveries/{id}`: the request and every attempt.
pub(super) async fn delivery(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let found = match api.blocking(move |s| s.delivery_detail(&id)).await {
        Ok(d) => d,
        Err(p) => return p.into_response(),
    };
    let Some(d) = found else {
        return Problem::new(StatusCode::NOT_FOUND, "no delivery has this id").into_response();
    };
    let attempts: Vec<Value> = d
        .attempts
        .iter()
        .map(|a| {
            let r = &a.attempt;
            json!({
                "n": a.n,
                "started": r.started_at.rfc3339(),
                "duration_ms": r.duration.as_millis() as u64,
                "request_headers": r.request_headers,
                "response_status": r.response_status,
                "response_headers": r.response_headers,
                "response_body": String::from_utf8_lossy(&r.response_body),
                "error": r.error,
            })
        })
        .collect();
    let mut v = delivery_json(&d.row);
    if let Some(o) = v.as_object_mut() {
        o.insert("request_body".into(), body_json(&d.body));
        o.insert("next_attempt".into(), json!(d.next_attempt_at.rfc3339()));
        o.insert("attempt_list".into(), Value::Array(attempts));
    }
    axum::Json(v).into_response()
}

/// `POST /api/deliveries/{id}/redeliver`: a new delivery of the same event and body to
/// the same hook (which must still run).
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
        let now = Timestamp::now();
        let new = api
            .blocking(move |s| s.redeliver(&id, now))
            .await?
            .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no delivery has this id"))?;
        if let Some(w) = view.wakes.get(&d.row.hook) {
            w.notify_one();
        }
        Ok::<_, Problem>(
            (StatusCode::ACCEPTED, axum::Json(json!({"delivery": new}))).into_response(),
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
