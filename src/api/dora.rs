//! `GET /api/dora`: the five DORA keys of each site over a window, the same report as
//! `deployhook dora --json` (`store::dora`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::IntoParams;

use super::{Api, ErrorOut, Problem};
use crate::model::Timestamp;
use crate::store::dora::{Report, Window, report};

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DoraQuery {
    /// Only this site.
    site: Option<String>,
    /// The window's start: a span back from now (`30d`, the default) or an RFC 3339 time.
    since: Option<String>,
    /// The window's end: a span back from now or an RFC 3339 time (default: now).
    until: Option<String>,
}

/// `GET /api/dora?site=&since=&until=`.
#[utoipa::path(get, path = "/dora", tag = "deployments", summary = "DORA's five keys per site over a window",
    params(DoraQuery),
    responses((status = 200, description = "OK", body = Report), (status = 400, description = "Bad request", body = ErrorOut), (status = 401, description = "No token or a wrong one", body = ErrorOut)))]
pub(super) async fn get(
    State(api): State<Api>,
    q: Result<Query<DoraQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let Query(q) = q.map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "the query string cannot be read (a parameter given twice?)",
            )
        })?;
        let window = Window::parse(q.since.as_deref(), q.until.as_deref(), Timestamp::now())
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))?;
        let site = q.site.filter(|s| !s.is_empty());
        let history = api
            .blocking(move |s| s.dora_history(site.as_deref()))
            .await?;
        Ok::<_, Problem>(axum::Json(report(&history, window)).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
