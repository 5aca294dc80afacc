//! The console's DORA page (`/ui/dora`): the five keys of each site over the last 7, 30
//! or 90 days, the same report as `deployhook dora` and `GET /api/dora`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::{frame, page, problem_page, v};
use crate::api::{Api, Problem};
use crate::model::Timestamp;
use crate::store::dora::{Figures, Window, rate, report, spread};

/// The windows the page offers.
const WINDOWS: [&str; 3] = ["7d", "30d", "90d"];

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct DoraQuery {
    since: Option<String>,
}

/// One row of the table, as text.
#[derive(Serialize)]
struct Row {
    site: String,
    deployments: u64,
    per_day: String,
    lead_time: String,
    change_failure: String,
    recovery: String,
    rework: String,
}

fn row(site: &str, f: &Figures) -> Row {
    Row {
        site: site.to_string(),
        deployments: f.deployments,
        per_day: format!("{:.2}", f.per_day),
        lead_time: spread(&f.lead_time, true),
        change_failure: rate(
            f.change_failure_rate,
            f.failed + f.rolled_back,
            f.deployments,
        ),
        recovery: spread(&f.recovery, false),
        rework: rate(f.rework_rate, f.rework, f.deployments),
    }
}

pub(super) async fn dora(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Result<Query<DoraQuery>, QueryRejection>,
) -> Response {
    let since = q
        .ok()
        .and_then(|Query(q)| q.since)
        .filter(|s| WINDOWS.contains(&s.as_str()))
        .unwrap_or_else(|| "30d".to_string());
    let window = match Window::parse(Some(&since), None, Timestamp::now()) {
        Ok(w) => w,
        Err(e) => return problem_page(&api, &headers, &Problem::new(StatusCode::BAD_REQUEST, e)),
    };
    let history = match api.blocking(|s| s.dora_history(None)).await {
        Ok(h) => h,
        Err(p) => return problem_page(&api, &headers, &p),
    };
    let r = report(&history, window);
    let mut rows: Vec<Row> = r.sites.iter().map(|s| row(&s.site, &s.figures)).collect();
    if r.sites.len() > 1 {
        rows.push(row("all sites", &r.all));
    }
    page(
        StatusCode::OK,
        "dora.html",
        minijinja::context! {
            frame => v(&frame(&api, &headers, "dora")),
            rows => v(&rows),
            since => v(&since),
            windows => v(&WINDOWS),
        },
    )
}
