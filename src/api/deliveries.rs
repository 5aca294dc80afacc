//! The delivery log with filters: `GET /api/deliveries` and `POST /api/deliveries/retry`
//! (every failure the filters match), the same filters as `deployhook deliveries
//! list|retry` (`store::query::DeliveryFilter`), for scripts and the console.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::history::{DeliveryOut, delivery_out, run_name};
use super::{Api, ErrorOut, Problem};
use crate::model::Timestamp;
use crate::store::query::{DeliveryFilter, DeliveryOutcome};

/// At most this many in one listing.
const MAX_LIST: usize = 1000;

/// The filters (all optional; together they all must hold).
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FilterQuery {
    /// Only this hook's: a decimal id, or a config hook's name.
    hook: Option<String>,
    /// Only this event type's (case-insensitive).
    event: Option<String>,
    /// Only these outcomes, comma-separated: delivered, retrying, waiting, dead,
    /// cancelled.
    outcome: Option<String>,
    /// Only those whose last attempt got this HTTP status.
    #[param(value_type = Option<u16>)]
    http_status: Option<String>,
    /// Only those created in this last span, e.g. `1h`, `30m`, `7d`.
    since: Option<String>,
    /// Only those created before this long ago, e.g. `10m`.
    until: Option<String>,
    /// At most this many (default 100, at most 1000); listings only.
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
}

fn bad(message: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, message)
}

/// The store's filter and the limit, or a 400 that says which parameter is wrong.
fn filter_of(
    q: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<(DeliveryFilter, usize), Problem> {
    let Query(q) =
        q.map_err(|_| bad("the query string cannot be read (a parameter given twice?)"))?;
    let outcomes = match &q.outcome {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|o| {
                DeliveryOutcome::parse(o.trim()).ok_or_else(|| {
                    bad("outcome takes delivered, retrying, waiting, dead or cancelled")
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let now = Timestamp::now();
    let ago = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| {
                crate::model::parse_duration(t)
                    .map(|d| now.minus(d))
                    .map_err(|_| bad(format!("{name} takes a span such as 1h, 30m or 7d")))
            })
            .transpose()
    };
    let http_status = q
        .http_status
        .as_deref()
        .map(|s| {
            s.parse::<u16>()
                .map_err(|_| bad("http_status takes a number"))
        })
        .transpose()?;
    let limit = match &q.limit {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .map(|n| n.clamp(1, MAX_LIST))
            .map_err(|_| bad("limit must be a positive number"))?,
    };
    Ok((
        DeliveryFilter {
            hook: q.hook.as_deref().map(run_name),
            event: q.event,
            outcomes,
            http_status,
            since: ago("since", &q.since)?,
            until: ago("until", &q.until)?,
            site: None,
            deployment: None,
        },
        limit,
    ))
}

/// `GET /api/deliveries?hook=&event=&outcome=&http_status=&since=&until=&limit=`.
#[utoipa::path(get, path = "/deliveries", tag = "deliveries", summary = "Deliveries, newest first, filtered",
    params(FilterQuery),
    responses((status = 200, description = "OK", body = Vec<DeliveryOut>), (status = 400, description = "Bad request", body = ErrorOut), (status = 401, description = "No token or a wrong one", body = ErrorOut)))]
pub(super) async fn list(
    State(api): State<Api>,
    q: Result<Query<FilterQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let (filter, limit) = filter_of(q)?;
        let rows = api
            .blocking(move |s| s.find_deliveries(&filter, limit))
            .await?;
        Ok::<_, Problem>(
            axum::Json(rows.iter().map(delivery_out).collect::<Vec<_>>()).into_response(),
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// What a retry did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RetryOut {
    /// Deliveries the filters matched.
    matched: usize,
    /// Waiting or retrying ones made due now.
    due: usize,
    /// Dead ones queued again as new deliveries (their history kept).
    queued_again: usize,
    /// Dead ones not queued again: their hook's queue is full (`api.max_queue_bytes`).
    refused: usize,
}

/// `POST /api/deliveries/retry?…filters`: every failure the filters match, now.
#[utoipa::path(post, path = "/deliveries/retry", tag = "deliveries", summary = "Retry every failed or waiting delivery the filters match",
    params(FilterQuery),
    responses((status = 200, description = "OK", body = RetryOut), (status = 400, description = "Bad request", body = ErrorOut), (status = 401, description = "No token or a wrong one", body = ErrorOut)))]
pub(super) async fn retry(
    State(api): State<Api>,
    q: Result<Query<FilterQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let (filter, _) = filter_of(q)?;
        let filter = filter.for_retry().map_err(bad)?;
        let n = api.retry_matching(filter).await?;
        Ok::<_, Problem>(
            axum::Json(RetryOut {
                matched: n.matched,
                due: n.due,
                queued_again: n.queued_again,
                refused: n.refused,
            })
            .into_response(),
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
