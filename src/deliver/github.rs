//! The `github-deployments` sink: one delivery is one deployment status, sent to
//! GitHub's Deployments API (or GitHub Enterprise's, `url` being the API base). The
//! deployment it belongs to is created first, once: `store::github` remembers that a
//! create went out and, after GitHub's 201, its id. A create whose answer was lost (a
//! crash, a timeout) is looked for before it is sent again (deployments list, by the key
//! in its payload), so a restart never creates a second one. A failing create or status
//! is a failed attempt like any other, retried on the hook's schedule; the statuses
//! after it wait in the queue.

use reqwest::Method;
use serde_json::Value;

use super::{AttemptRecord, Response, USER_AGENT, exchange};
use crate::config::HookConfig;
use crate::events::github::{GithubDelivery, parse};
use crate::model::Timestamp;
use crate::store::github::GithubState;
use crate::store::{DueDelivery, Store};

/// GitHub's REST API version this sink speaks.
pub const API_VERSION: &str = "2022-11-28";

/// Sends one attempt of `d`: a ping reads the repository; a status creates its
/// deployment first if need be.
pub async fn send(
    client: &reqwest::Client,
    hook: &HookConfig,
    d: &DueDelivery,
    store: &Store,
    now: Timestamp,
) -> (AttemptRecord, Response) {
    let Some(target) = &hook.github else {
        return failed(now, "not a github-deployments hook".into());
    };
    let repo = format!(
        "{}/repos/{}",
        hook.url.as_str().trim_end_matches('/'),
        target.repository
    );
    if d.event == "ping" {
        return request(client, hook, d, Method::GET, &repo, None, now).await;
    }
    let Some(g) = parse(&d.body) else {
        return failed(now, "the delivery is not a GitHub deployment status".into());
    };
    let state = match blocking(store, hook, &g.key, |s, h, k| s.github_state(h, k)).await {
        Ok(s) => s,
        Err(e) => return failed(now, e),
    };
    let id = match state {
        GithubState::Created(id) => id,
        GithubState::CreateSent | GithubState::Unknown => {
            if state == GithubState::CreateSent
                && let Some(id) = find(client, hook, d, &repo, &g, now).await
            {
                if let Err(e) = remember(store, hook, &g.key, id).await {
                    return failed(now, e);
                }
                id
            } else {
                match create(client, hook, d, store, &repo, &g, now).await {
                    Ok(id) => id,
                    Err(failure) => return failure,
                }
            }
        }
    };
    let url = format!("{repo}/deployments/{id}/statuses");
    request(client, hook, d, Method::POST, &url, Some(&g.status), now).await
}

/// Creates the deployment of `g`; its id, or the failed attempt.
async fn create(
    client: &reqwest::Client,
    hook: &HookConfig,
    d: &DueDelivery,
    store: &Store,
    repo: &str,
    g: &GithubDelivery,
    now: Timestamp,
) -> Result<i64, (AttemptRecord, Response)> {
    let key = g.key.clone();
    if let Err(e) = blocking(store, hook, &key, move |s, h, k| {
        s.github_create_sent(h, k, now)
    })
    .await
    {
        return Err(failed(now, e));
    }
    let url = format!("{repo}/deployments");
    let (mut record, response) =
        request(client, hook, d, Method::POST, &url, Some(&g.create), now).await;
    let code = record.response_status.unwrap_or(0);
    let id = (code == 201)
        .then(|| serde_json::from_slice::<Value>(&record.response_body).ok())
        .flatten()
        .and_then(|v| v.get("id").and_then(Value::as_i64));
    match id {
        Some(id) => match remember(store, hook, &g.key, id).await {
            Ok(()) => Ok(id),
            Err(e) => Err(failed(now, e)),
        },
        None => {
            // A 202 (GitHub merged the default branch instead) or a 201 without an id
            // is no deployment: the attempt failed, whatever the status code says.
            let why = if (200..300).contains(&code) {
                format!("creating the deployment: GitHub answered {code} without a deployment id")
            } else {
                "creating the deployment failed".to_string()
            };
            record.error = Some(match record.error.take() {
                Some(e) => format!("{why}: {e}"),
                None => why,
            });
            let response = match response {
                Response::Status { code, retry_after } if !(200..300).contains(&code) => {
                    Response::Status { code, retry_after }
                }
                Response::Status { .. } => Response::Error,
                Response::Error => Response::Error,
            };
            Err((record, response))
        }
    }
}

/// A deployment of `g`'s key that an earlier, unanswered create made, if any.
async fn find(
    client: &reqwest::Client,
    hook: &HookConfig,
    d: &DueDelivery,
    repo: &str,
    g: &GithubDelivery,
    now: Timestamp,
) -> Option<i64> {
    let sha = g.create.get("ref")?.as_str()?;
    let environment = g.create.get("environment")?.as_str()?;
    let mut url = url::Url::parse(&format!("{repo}/deployments")).ok()?;
    url.query_pairs_mut()
        .append_pair("sha", sha)
        .append_pair("environment", environment)
        // Newest first; 10 of them stay well inside the 64 KiB of an answer that is read.
        .append_pair("per_page", "10");
    let (record, _) = request(client, hook, d, Method::GET, url.as_str(), None, now).await;
    if record.response_status != Some(200) {
        return None;
    }
    let list: Vec<Value> = serde_json::from_slice(&record.response_body).ok()?;
    list.iter()
        .find(|dep| dep["payload"]["deployhook"]["key"].as_str() == Some(g.key.as_str()))
        .and_then(|dep| dep.get("id")?.as_i64())
}

async fn remember(store: &Store, hook: &HookConfig, key: &str, id: i64) -> Result<(), String> {
    blocking(store, hook, key, move |s, h, k| {
        s.github_created(h, k, id, Timestamp::now())
    })
    .await
}

/// A store call off the async threads; its error as text for the attempt's record.
async fn blocking<T: Send + 'static>(
    store: &Store,
    hook: &HookConfig,
    key: &str,
    f: impl FnOnce(&Store, &str, &str) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    let (store, hook, key) = (store.clone(), hook.name.clone(), key.to_string());
    tokio::task::spawn_blocking(move || f(&store, &hook, &key))
        .await
        .map_err(|e| format!("the outbox task failed: {e}"))?
        .map_err(|e| format!("the outbox: {}", crate::telemetry::chain(&e)))
}

/// One request to the API, with its token and GitHub's headers.
async fn request(
    client: &reqwest::Client,
    hook: &HookConfig,
    d: &DueDelivery,
    method: Method,
    url: &str,
    body: Option<&Value>,
    now: Timestamp,
) -> (AttemptRecord, Response) {
    let mut headers = vec![
        (
            "Accept".to_string(),
            "application/vnd.github+json".to_string(),
        ),
        ("X-GitHub-Api-Version".to_string(), API_VERSION.to_string()),
        ("User-Agent".to_string(), USER_AGENT.to_string()),
        ("X-Deployhook-Delivery".to_string(), d.id.clone()),
    ];
    if let Some(token) = &hook.secret {
        headers.push(("Authorization".into(), format!("Bearer {}", token.first())));
    }
    headers.extend(hook.headers.iter().cloned());
    let mut req = client.request(method, url);
    if let Some(b) = body {
        headers.push(("Content-Type".into(), "application/json".into()));
        req = req.body(serde_json::to_vec(b).unwrap_or_default());
    }
    exchange(hook, req, headers, now).await
}

fn failed(now: Timestamp, why: String) -> (AttemptRecord, Response) {
    (
        AttemptRecord {
            started_at: now,
            error: Some(why),
            ..AttemptRecord::default()
        },
        Response::Error,
    )
}
