//! The delivery log's pages: the list with its filters, one delivery, redeliver, and the
//! retry of every failure a filter matches (a confirmation with the count, then the form).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;

use super::{Csrf, check_form, frame, page, problem_page, urlencode, v};
use crate::api::history::{delivery_out, detail_out};
use crate::api::{Api, Problem};
use crate::model::Timestamp;
use crate::store::query::{DeliveryFilter, DeliveryOutcome};

/// The delivery log's filters, as the form sends them (empty fields are no filter).
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub(super) struct LogQuery {
    #[serde(default)]
    hook: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    http_status: String,
    #[serde(default)]
    since: String,
}

impl LogQuery {
    fn filter(&self) -> Result<DeliveryFilter, Problem> {
        let bad = |m: &str| Problem::new(StatusCode::BAD_REQUEST, m);
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let outcomes = match some(&self.outcome) {
            None => Vec::new(),
            Some(o) => vec![DeliveryOutcome::parse(&o).ok_or_else(|| bad("no such outcome"))?],
        };
        let http_status = some(&self.http_status)
            .map(|s| {
                s.parse::<u16>()
                    .map_err(|_| bad("the HTTP status is a number"))
            })
            .transpose()?;
        let since = some(&self.since)
            .map(|s| {
                crate::model::parse_duration(&s)
                    .map(|d| Timestamp::now().minus(d))
                    .map_err(|_| bad("“since” takes a span such as 1h, 30m or 7d"))
            })
            .transpose()?;
        Ok(DeliveryFilter {
            hook: some(&self.hook),
            event: some(&self.event),
            outcomes,
            http_status,
            since,
            until: None,
            site: None,
            deployment: None,
        })
    }

    /// The query string that repeats these filters.
    fn to_query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("hook", &self.hook)
            .append_pair("event", &self.event)
            .append_pair("outcome", &self.outcome)
            .append_pair("http_status", &self.http_status)
            .append_pair("since", &self.since)
            .finish()
    }
}

pub(super) async fn deliveries(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    let filter = match q.filter() {
        Ok(f) => f,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let rows = match api.blocking(move |s| s.find_deliveries(&filter, 200)).await {
        Ok(r) => r,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let hooks = api.hook_names();
    page(
        StatusCode::OK,
        "deliveries.html",
        minijinja::context! {
            frame => v(&frame(&api, &headers, "deliveries")),
            rows => v(&rows.iter().map(delivery_out).collect::<Vec<_>>()),
            q => v(&q.clone()),
            query => v(&q.to_query()),
            hooks => v(&hooks),
            outcomes => v(&DeliveryOutcome::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>()),
        },
    )
}

pub(super) async fn delivery(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let found = match api.blocking(move |s| s.delivery_detail(&id)).await {
        Ok(d) => d,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let Some(d) = found else {
        let p = Problem::new(StatusCode::NOT_FOUND, "No delivery has this id.");
        return problem_page(&api, &headers, &p);
    };
    let detail = detail_out(&d);
    // The body as sent: pretty JSON, or (not JSON) its base64.
    let body = match detail.request_body.get("json") {
        Some(json) => serde_json::to_string_pretty(json).unwrap_or_default(),
        None => detail.request_body["base64"]
            .as_str()
            .map_or_else(String::new, |b| format!("(not JSON; base64)\n{b}")),
    };
    page(
        StatusCode::OK,
        "delivery.html",
        minijinja::context! {
            frame => v(&frame(&api, &headers, "deliveries")),
            d => v(&detail),
            body => v(&body),
        },
    )
}

pub(super) async fn redeliver(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(p) = check_form(&api, &headers, &form) {
        return problem_page(&api, &headers, &p);
    }
    let resp = crate::api::history::redeliver(State(api.clone()), Path(id.clone())).await;
    if resp.status() != StatusCode::ACCEPTED {
        let p = Problem::new(resp.status(), "The delivery could not be queued again.");
        return problem_page(&api, &headers, &p);
    }
    Redirect::to(&format!("/ui/deliveries?sent={}", urlencode(&id))).into_response()
}

pub(super) async fn retry_confirm(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let Query(q) = q.unwrap_or_default();
    let filter = match q.filter().and_then(|f| {
        f.for_retry()
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))
    }) {
        Ok(f) => f,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let count = match api
        .blocking(move |s| s.find_deliveries(&filter, usize::MAX))
        .await
    {
        Ok(rows) => rows.len(),
        Err(p) => return problem_page(&api, &headers, &p),
    };
    page(
        StatusCode::OK,
        "retry.html",
        minijinja::context! {
            frame => v(&frame(&api, &headers, "deliveries")),
            count => v(&count),
            q => v(&q.clone()),
            query => v(&q.to_query()),
        },
    )
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct RetryForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    q: LogQuery,
}

pub(super) async fn retry(
    State(api): State<Api>,
    headers: HeaderMap,
    Form(form): Form<RetryForm>,
) -> Response {
    if let Err(p) = check_form(
        &api,
        &headers,
        &Csrf {
            csrf: form.csrf.clone(),
        },
    ) {
        return problem_page(&api, &headers, &p);
    }
    let filter = match form.q.filter().and_then(|f| {
        f.for_retry()
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))
    }) {
        Ok(f) => f,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let n = match api.retry_matching(filter).await {
        Ok(n) => n,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    Redirect::to(&format!(
        "/ui/deliveries?{}&retried={}",
        form.q.to_query(),
        n.due + n.queued_again
    ))
    .into_response()
}
