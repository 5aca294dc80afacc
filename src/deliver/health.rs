//! The health probe's HTTP: one GET of a site's `health_url` (a 2xx or why not) with a
//! client of its own — TLS verified, no redirects, 5 s per request. The daemon's
//! `health.rs` decides when to probe; this room only knows how.

use std::time::Duration;

use super::{DeliverError, USER_AGENT, describe_error, init_tls};

/// One GET of a site's `health_url`: `Ok` for a 2xx, else why not.
pub async fn probe_health(client: &reqwest::Client, url: &url::Url) -> Result<u16, String> {
    match client.get(url.clone()).send().await {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(describe_error(&e)),
    }
}

/// The client for health checks: TLS verified, no redirects, 5 s per request.
pub fn health_client() -> Result<reqwest::Client, DeliverError> {
    init_tls();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|source| DeliverError::BuildClient {
            hook: "(health check)".into(),
            source,
        })
}
