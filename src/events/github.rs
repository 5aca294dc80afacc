//! The `github-deployments` format: what a delivery to GitHub's Deployments API holds
//! (SPEC §3). It is not one request but the two a sink may need — the deployment to
//! create (once per deployhook deployment, keyed) and the status to post — which
//! `deliver/github.rs` sends: the create only while no GitHub id is stored for the key.

use serde_json::{Value, json};

use super::{DeploymentEvent, Rendered};
use crate::config::HookConfig;
use crate::model::Status;

/// GitHub's limit on a status's description.
pub const MAX_DESCRIPTION: usize = 140;

/// A deployment status's `state` for a status of ours.
pub fn state(status: Status) -> &'static str {
    match status {
        Status::Pending => "queued",
        Status::Building | Status::Deploying => "in_progress",
        Status::Success => "success",
        Status::Failed => "failure",
    }
}

/// At most `MAX_DESCRIPTION` characters (not bytes: GitHub counts characters).
fn description(text: &str) -> String {
    if text.chars().count() <= MAX_DESCRIPTION {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    s.push('…');
    s
}

/// `{site}` and `{id}` in a configured URL replaced (the id percent-encoded).
fn fill(template: &str, site: &str, id: &str) -> String {
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    template
        .replace("{site}", &enc(site))
        .replace("{id}", &enc(id))
}

pub use crate::model::is_full_sha;

/// The delivery of a deployment event to a `github-deployments` hook: `None` for a
/// PostDeployment when the hook also takes StatusChanged (that one already says it),
/// and for deploying after building (both are `in_progress`).
pub fn render(hook: &HookConfig, ev: &DeploymentEvent<'_>) -> Option<Rendered> {
    let target = hook.github.as_ref()?;
    if ev.kind == super::POST_DEPLOYMENT && hook.wants_event(super::STATUS_CHANGED) {
        return None;
    }
    let t = ev.transition;
    let d = &t.deployment;
    // GitHub deploys a `ref`: a deployment whose id is no full commit SHA (its commit
    // could not be known) is not sent; said and counted once, at its first transition.
    if !is_full_sha(&d.id) {
        if t.from.is_none() {
            crate::metrics::get().github_not_commit(&hook.name);
            tracing::warn!(hook = %hook.name, site = %crate::telemetry::escape(ev.cx.site), deployment = %crate::telemetry::escape(&d.id), "not sent to this github-deployments hook: the deployment's id is no commit SHA");
        }
        return None;
    }
    // Building and deploying are both `in_progress`: the second would say nothing new.
    if t.to == Status::Deploying && t.from == Some(Status::Building) {
        return None;
    }
    let site = ev.cx.site;
    let environment = target.environment.as_deref().unwrap_or(site);
    let short: String = d.id.chars().take(7).collect();
    let who = ev
        .payload
        .deployer
        .as_deref()
        .or(ev.payload.author.as_deref())
        .unwrap_or("someone");
    let first_line = ev
        .payload
        .message
        .as_deref()
        .and_then(|m| m.lines().next())
        .unwrap_or("");
    let key = format!("{}/{site}/{}", ev.cx.host_name, d.serial);
    let mut status = json!({
        "state": state(t.to),
        "description": description(&format!(
            "{site}: {}{} {short} by {who}",
            t.to.as_str(),
            if d.rollback { " (rollback)" } else { "" },
        )),
        "environment": environment,
    });
    if let Some(u) = &target.log_url {
        status["log_url"] = fill(u, site, &d.id).into();
    }
    if let Some(u) = &target.environment_url {
        status["environment_url"] = fill(u, site, &d.id).into();
    }
    let body = json!({
        "key": key,
        "create": {
            "ref": d.id,
            "task": "deploy",
            "auto_merge": false,
            "required_contexts": [],
            "environment": environment,
            "description": description(&format!("{site} {short}: {first_line}")),
            "payload": {
                "deployhook": {
                    "key": key,
                    "site": site,
                    "host": ev.cx.host_name,
                    "release": d.release,
                }
            },
        },
        "status": status,
    });
    Some(Rendered::plain(
        serde_json::to_vec(&body).unwrap_or_default(),
    ))
}

/// A delivery's parts, parsed back by the sink.
#[derive(Clone, Debug, PartialEq)]
pub struct GithubDelivery {
    pub key: String,
    pub create: Value,
    pub status: Value,
}

/// Parses a delivery body `render` wrote; `None` for anything else (a ping).
pub fn parse(body: &[u8]) -> Option<GithubDelivery> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(GithubDelivery {
        key: v.get("key")?.as_str()?.to_string(),
        create: v.get("create")?.clone(),
        status: v.get("status")?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_fit_and_urls_are_filled() {
        let long = "é".repeat(500);
        assert_eq!(description(&long).chars().count(), MAX_DESCRIPTION);
        assert_eq!(description("short"), "short");
        assert_eq!(
            fill("https://ci.example.com/{site}/{id}", "shop", "a b/c"),
            "https://ci.example.com/shop/a%20b%2Fc"
        );
        assert_eq!(state(Status::Deploying), "in_progress");
    }
}
