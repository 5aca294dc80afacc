//! Chains in the API: `POST /api/callbacks/{token}`, where a chain step's receiver says
//! how its part went (Docker Hub's callback body), and `GET /api/chains`, every run with
//! its steps. A callback needs no API token — its single-use token is the credential —
//! and a bad body is `400` with the step left waiting.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{Api, ErrorOut, Problem};
use crate::model::Timestamp;
use crate::store::chains::{Answered, Callback, ChainRun, ChainStep};

const MAX_DESCRIPTION: usize = 255;
const MAX_CONTEXT: usize = 100;
const MAX_TARGET_URL: usize = 2048;

/// What a chain step's receiver posts.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct CallbackIn {
    /// `success` calls the next hook; `failure` and `error` end the chain.
    state: Option<String>,
    /// At most 255 characters.
    description: Option<String>,
    /// At most 100 characters.
    context: Option<String>,
    /// An absolute http(s) URL with more detail (at most 2048 bytes).
    target_url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct CallbackOut {
    /// The state recorded.
    state: String,
    /// The hook called next, if the chain goes on.
    next: Option<String>,
}

/// The callback as recorded, or why it is refused.
fn check(body: &[u8]) -> Result<Callback, String> {
    let b: CallbackIn =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a callback: {e}"))?;
    let state = match b.state.as_deref() {
        Some(s @ ("success" | "failure" | "error")) => s.to_string(),
        Some(_) => return Err("state must be success, failure or error".into()),
        None => return Err("state is required (success, failure or error)".into()),
    };
    let short = |v: &Option<String>, name: &str, max: usize| match v {
        Some(s) if s.chars().count() > max => {
            Err(format!("{name} is longer than {max} characters"))
        }
        _ => Ok(v.clone()),
    };
    let description = short(&b.description, "description", MAX_DESCRIPTION)?;
    let context = short(&b.context, "context", MAX_CONTEXT)?;
    if let Some(u) = &b.target_url {
        let ok = u.len() <= MAX_TARGET_URL
            && url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err("target_url must be an absolute http(s) URL of at most 2048 bytes".into());
        }
    }
    Ok(Callback {
        state,
        description,
        context,
        target_url: b.target_url,
    })
}

/// `POST /api/callbacks/{token}`.
#[utoipa::path(post, path = "/callbacks/{token}", tag = "chains", summary = "A chain step's receiver reports how its part went",
    security(()),
    params(("token" = String, Path, description = "The single-use token of the step's callback_url")),
    request_body = CallbackIn,
    responses((status = 200, description = "Recorded", body = CallbackOut), (status = 400, description = "Not a valid callback; the step still waits", body = ErrorOut), (status = 404, description = "No step waits for this token (unknown, used, or its chain is over)", body = ErrorOut), (status = 410, description = "Too late: the step's callback_timeout has passed; the chain ended in error", body = ErrorOut)))]
pub(super) async fn callback(
    State(api): State<Api>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let run = async {
        let plausible = token.len() == 43
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plausible {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "no chain step waits for this token",
            ));
        }
        let cb = check(&body).map_err(|why| Problem::new(StatusCode::BAD_REQUEST, why))?;
        let Some(base) = api.settings.borrow().callback_base.clone() else {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "no chain step waits for this token",
            ));
        };
        let state = cb.state.clone();
        let recorded = api
            .blocking(move |s| {
                let next = |payload: &[u8], chain: &str, step: usize, of: usize| {
                    crate::events::chains::next_step(payload, &base, chain, step, of)
                };
                s.chain_callback(&token, &cb, &next, Timestamp::now())
            })
            .await?;
        let next = match recorded {
            Answered::Recorded(next) => next,
            Answered::Late => {
                return Err(Problem::new(
                    StatusCode::GONE,
                    "too late: the step's callback_timeout has passed, and its chain ended in error",
                ));
            }
            Answered::Unknown => {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "no chain step waits for this token",
                ));
            }
        };
        if let Some(n) = &next {
            let view = api.view.borrow().clone();
            if let Some(w) = view.wakes.get(&n.hook) {
                w.notify_one();
            }
        }
        tracing::info!(state = %state, next = %next.as_ref().map_or("-", |n| n.hook.as_str()), "chain callback");
        Ok(axum::Json(CallbackOut {
            state,
            next: next.map(|n| n.hook),
        })
        .into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// A chain run and its steps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ChainRunOut {
    id: String,
    chain: String,
    site: Option<String>,
    /// `running`, `success`, `failure` or `error`.
    state: String,
    /// Why it ended.
    reason: Option<String>,
    created_at: String,
    ended_at: Option<String>,
    steps: Vec<ChainStepOut>,
}

/// One hook called by a chain, and what its receiver said.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ChainStepOut {
    /// 1 for the first hook.
    step: u32,
    hook: String,
    /// The delivery id (`GET /api/deliveries/{id}` has its attempts).
    delivery: String,
    /// `waiting`; what the receiver said (`success`, `failure`, `error`); or `error`
    /// when it never said.
    state: String,
    description: Option<String>,
    context: Option<String>,
    target_url: Option<String>,
    answered_at: Option<String>,
}

fn run_out(r: ChainRun) -> ChainRunOut {
    ChainRunOut {
        id: r.id,
        chain: r.chain,
        site: r.site,
        state: r.state,
        reason: r.reason,
        created_at: r.created_at,
        ended_at: r.ended_at,
        steps: r.steps.into_iter().map(step_out).collect(),
    }
}

fn step_out(s: ChainStep) -> ChainStepOut {
    ChainStepOut {
        step: s.step,
        hook: s.hook,
        delivery: s.delivery,
        state: s.state,
        description: s.description,
        context: s.context,
        target_url: s.target_url,
        answered_at: s.answered_at,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(super) struct ChainsQuery {
    /// At most this many runs, newest first (1 to 1000; default 50).
    limit: Option<usize>,
}

/// `GET /api/chains`.
#[utoipa::path(get, path = "/chains", tag = "chains", summary = "Chain runs with their steps, newest first",
    params(ChainsQuery),
    responses((status = 200, description = "OK", body = Vec<ChainRunOut>), (status = 400, description = "Bad request", body = ErrorOut), (status = 401, description = "No token or a wrong one", body = ErrorOut)))]
pub(super) async fn list(
    State(api): State<Api>,
    q: Result<Query<ChainsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let run = async {
        let q = q.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        let limit = q.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "limit must be 1 to 1000",
            ));
        }
        let runs = api.blocking(move |s| s.chain_runs(limit)).await?;
        let out: Vec<ChainRunOut> = runs.into_iter().map(run_out).collect();
        Ok(axum::Json(out).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_checked_field_by_field() {
        assert!(check(br#"{"state":"success"}"#).is_ok());
        assert!(check(br#"{"state":"done"}"#).is_err());
        assert!(check(br#"{}"#).is_err());
        assert!(check(b"not json").is_err());
        let long = format!(
            r#"{{"state":"success","description":"{}"}}"#,
            "x".repeat(256)
        );
        assert!(check(long.as_bytes()).is_err_and(|e| e.contains("255")));
        let ctx = format!(r#"{{"state":"failure","context":"{}"}}"#, "é".repeat(100));
        assert!(check(ctx.as_bytes()).is_ok(), "100 characters, not bytes");
        assert!(check(br#"{"state":"error","target_url":"javascript:alert(1)"}"#).is_err());
    }
}
