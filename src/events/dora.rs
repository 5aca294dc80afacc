//! The DORA tools' formats: `devlake` (Apache DevLake's webhook deployments endpoint,
//! `WebhookDeploymentReq`) and `datadog-dora` (Datadog's DORA deployment API,
//! `DORADeploymentRequest`). A deployment's end only (`PostDeployment`): these tools take
//! finished deployments. The bodies are checked against the receivers' own definitions
//! (vendored in `tests/vendor/`).

use serde_json::{Value, json};

use super::{DeploymentEvent, POST_DEPLOYMENT, Rendered};
use crate::config::HookConfig;
use crate::model::{Status, Timestamp, is_full_sha};

/// One deployment's id for a DORA tool: unique per host, site and deployment.
pub fn deployment_key(host: &str, site: &str, serial: u64) -> String {
    format!("{host}:{site}:{serial}")
}

/// The first line of the deployment's message (its commit's subject).
fn subject(ev: &DeploymentEvent<'_>) -> String {
    ev.payload
        .message
        .as_deref()
        .and_then(|m| m.lines().next())
        .unwrap_or("")
        .to_string()
}

/// DevLake's body for a finished deployment whose id is a commit; `None` otherwise
/// (DevLake requires `commitSha`).
pub fn devlake(hook: &HookConfig, ev: &DeploymentEvent<'_>) -> Option<Rendered> {
    let d = &ev.transition.deployment;
    if ev.kind != POST_DEPLOYMENT || !is_full_sha(&d.id) {
        return None;
    }
    let started = d.started.unwrap_or(d.received);
    let finished = d.ended.unwrap_or(d.last_change);
    let result = if d.status == Status::Success {
        "SUCCESS"
    } else {
        "FAILURE"
    };
    let title = format!("{} {}", ev.cx.site, d.release.as_deref().unwrap_or(&d.id));
    let mut commit = json!({
        "repoUrl": ev.cx.repository_url.unwrap_or(""),
        "refName": d.branch.as_deref().unwrap_or(""),
        "commitSha": d.id,
        "commitMsg": subject(ev),
        "displayTitle": title,
        "result": result,
        "startedDate": started.rfc3339(),
        "finishedDate": finished.rfc3339(),
    });
    if ev.cx.repository_url.is_none()
        && let Some(o) = commit.as_object_mut()
    {
        o.remove("repoUrl");
    }
    let body = json!({
        "id": deployment_key(ev.cx.host_name, ev.cx.site, d.serial),
        "displayTitle": title,
        "result": result,
        "environment": hook.environment.as_deref().unwrap_or("PRODUCTION"),
        "name": format!("deploy {} to {}", ev.cx.site, hook.environment.as_deref().unwrap_or("PRODUCTION")),
        "createdDate": d.received.rfc3339(),
        "startedDate": started.rfc3339(),
        "finishedDate": finished.rfc3339(),
        "deploymentCommits": [commit],
    });
    Some(Rendered::plain(
        serde_json::to_vec(&body).unwrap_or_default(),
    ))
}

/// Nanoseconds since the epoch, as Datadog's `started_at` and `finished_at` take them.
fn nanos(t: Timestamp) -> i64 {
    t.0.saturating_mul(1000)
}

/// Datadog's body for a successful deployment (Datadog counts deployments; failures
/// are its incidents' business); `None` otherwise.
pub fn datadog(hook: &HookConfig, ev: &DeploymentEvent<'_>) -> Option<Rendered> {
    let d = &ev.transition.deployment;
    if ev.kind != POST_DEPLOYMENT || d.status != Status::Success {
        return None;
    }
    let mut attributes = json!({
        "id": deployment_key(ev.cx.host_name, ev.cx.site, d.serial),
        "service": ev.cx.site,
        "env": hook.environment.as_deref().unwrap_or("production"),
        "started_at": nanos(d.started.unwrap_or(d.received)),
        "finished_at": nanos(d.ended.unwrap_or(d.last_change)),
        "version": d.release.as_deref().unwrap_or(&d.id),
    });
    if let (Some(url), true, Some(o)) = (
        ev.cx.repository_url,
        is_full_sha(&d.id),
        attributes.as_object_mut(),
    ) {
        o.insert(
            "git".into(),
            json!({ "commit_sha": d.id, "repository_url": url }),
        );
    }
    let body: Value = json!({ "data": { "attributes": attributes } });
    Some(Rendered::plain(
        serde_json::to_vec(&body).unwrap_or_default(),
    ))
}
